"""Without a terminal (CI logs, nohup, SLURM), long work logs plain progress lines."""

from __future__ import annotations

import re

from medclip_cli.ui import PlainProgress
from tests.conftest import run_medclip
from tests.training.conftest import make_small_medpix


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_every_interval_with_step_fields_and_eta():
    lines, clock = [], FakeClock()
    reporter = PlainProgress(lines.append, interval=30, clock=clock)
    task = reporter.task("epoch 1/2", total=100)
    clock.now = 10
    reporter.advance(task, 10, loss=0.75, samples_s=32.0)
    assert lines == []  # not yet 30 s
    clock.now = 40
    reporter.advance(task, 30, loss=0.5, samples_s=31.5)
    assert len(lines) == 1
    assert "epoch 1/2:  40/100 (40%)  loss 0.5  samples_s 31.5  elapsed 0:00:40  ETA 0:01:00" in lines[0]
    clock.now = 60
    reporter.advance(task, 60)
    assert len(lines) == 1  # 20 s since the last line
    reporter.done(task)
    assert lines[-1].endswith("100/100 (100%)  loss 0.5  samples_s 31.5  elapsed 0:01:00  done")


def test_a_short_task_stays_silent():
    lines, clock = [], FakeClock()
    reporter = PlainProgress(lines.append, interval=30, clock=clock)
    task = reporter.task("hashing train images", total=5)
    reporter.advance(task, 5)
    reporter.done(task)
    assert lines == []


def test_finetune_without_a_terminal_logs_steps(tmp_path):
    data = make_small_medpix(tmp_path / "data", 16, 8)
    result = run_medclip(
        "finetune", "--encoder", "test-vit", "--pretrained", "none", "--data", data, "--output", tmp_path / "run",
        "--batch-size", "4", "--max-steps", "3", "--val-split", "none", "--device", "cpu",
        env={"MEDCLIP_LOG_INTERVAL": "0"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    steps = [line for line in result.stderr.splitlines() if re.search(r"epoch 1/1:  \d/3 ", line)]
    assert len(steps) >= 3, result.stderr
    assert all("loss " in line and "samples_s " in line for line in steps)
    assert any("ETA " in line for line in steps) and "\x1b[" not in result.stderr  # no terminal codes in a log
