"""Without a terminal (CI logs, nohup, SLURM), long work logs plain progress lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from medclip_cli.ui import PlainProgress
from tests.training.conftest import make_small_medpix


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_at_start_every_interval_and_at_the_end():
    lines, clock = [], FakeClock()
    reporter = PlainProgress(lines.append, interval=30, clock=clock)
    task = reporter.task("epoch 1/2", total=100)
    assert len(lines) == 1 and lines[0].endswith("  epoch 1/2: start, 100 to do")
    clock.now = 10
    reporter.advance(task, 10, loss=0.75, samples_s=32.0)
    assert len(lines) == 1  # not yet 30 s
    clock.now = 40
    reporter.advance(task, 30, loss=0.5, samples_s=31.5)
    assert len(lines) == 2
    assert "epoch 1/2:  40/100 (40%)  loss 0.5  samples_s 31.5  elapsed 0:00:40  ETA 0:01:00" in lines[1]
    clock.now = 60
    reporter.advance(task, 60)
    assert len(lines) == 2  # 20 s since the last line
    clock.now = 125
    reporter.done(task)
    assert lines[-1].endswith("epoch 1/2: done  100/100 (100%)  loss 0.5  samples_s 31.5  in 0:02:05")


def test_a_short_task_logs_its_start_and_end_only():
    lines, clock = [], FakeClock()
    reporter = PlainProgress(lines.append, interval=30, clock=clock)
    task = reporter.task("hashing train images", total=5)
    reporter.advance(task, 5)
    clock.now = 2.25
    reporter.done(task)
    assert [line.split("  ", 1)[1] for line in lines] == [
        "hashing train images: start, 5 to do",
        "hashing train images: done  5/5 (100%)  in 2.2 s",
    ]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  ", lines[0])  # each line says when


def test_a_task_of_unknown_size_counts_what_it_did():
    lines = []
    reporter = PlainProgress(lines.append, interval=30, clock=FakeClock())
    task = reporter.task("downloading example.org archive (kB)")
    reporter.advance(task, 300)
    reporter.done(task)
    assert lines[0].endswith("downloading example.org archive (kB): start")
    assert lines[1].endswith("downloading example.org archive (kB): done  300  in 0.0 s")


def _run_into_log(log: Path, *args, env: dict | None = None) -> str:
    """``medclip ARGS > log 2>&1`` in a fresh process; the log's text."""
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(
            [sys.executable, "-m", "medclip_cli.cli", *[str(a) for a in args]],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, timeout=300,
        )  # fmt: skip
    text = log.read_text(encoding="utf-8")
    assert done.returncode == 0, text
    return text


def _stages(text: str) -> list[tuple[str, str]]:
    """(stage, start|done) of each stage line, in order."""
    return [(m["stage"], m["what"]) for m in re.finditer(r"^[\d-]+ [\d:]+  (?P<stage>.+?): (?P<what>start|done)\b", text, re.M)]


def test_finetune_without_a_terminal_logs_steps(tmp_path):
    data = make_small_medpix(tmp_path / "data", 16, 8)
    text = _run_into_log(
        tmp_path / "finetune.log",
        "finetune", "--encoder", "test-vit", "--pretrained", "none", "--data", data, "--output", tmp_path / "run",
        "--batch-size", "4", "--max-steps", "3", "--val-split", "none", "--device", "cpu",
        env={"MEDCLIP_LOG_INTERVAL": "0"},
    )  # fmt: skip
    steps = [line for line in text.splitlines() if re.search(r"epoch 1/1:  \d/3 ", line)]
    assert len(steps) >= 3, text
    assert all("loss " in line and "samples_s " in line for line in steps)
    assert any("ETA " in line for line in steps) and "\x1b[" not in text  # no terminal codes in a log
    assert re.search(r"epoch 1/1: done  3/3 \(100%\)  loss [\d.]+  lr [\d.e-]+  samples_s [\d.]+  in [\d.]+ s$", text, re.M), text


def test_every_stage_of_a_short_run_says_when_it_starts_and_ends(tmp_path):
    """Stages shorter than the 30 s interval: a start line (with how many items) and a done line
    (items, seconds) each, in order, around the tables: ``finetune ... > log`` and
    ``evaluate ... > log 2>&1`` read as logs."""
    data = make_small_medpix(tmp_path / "data", 16, 8)
    text = _run_into_log(
        tmp_path / "finetune.log",
        "finetune", "--encoder", "test-vit", "--pretrained", "none", "--data", data, "--output", tmp_path / "run",
        "--batch-size", "4", "--max-steps", "2", "--device", "cpu",
    )  # fmt: skip
    stages = _stages(text)
    assert ("epoch 1/1", "start") in stages and ("epoch 1/1", "done") in stages, text
    assert any(name.startswith("validating on dev") for name, _ in stages), text
    for i in range(0, len(stages), 2):  # each stage ends before the next starts
        assert stages[i][1] == "start" and stages[i + 1] == (stages[i][0], "done"), text
    assert re.search(r"epoch 1/1: start, 2 to do$", text, re.M), text
    assert "\x1b[" not in text and "finetune → " in text  # the settings table is in the log too
    assert re.search(r"^[\d-]+ [\d:]+  fitting the temperature of last/ on dev$", text, re.M), text
    # Bundles trained from random init are not "random weights" (the fit used to warn, twice).
    assert "predictions mean nothing" not in text

    text = _run_into_log(
        tmp_path / "evaluate.log",
        "evaluate", "--data", data, "--split", "dev", "--encoder", "test-vit", "--pretrained", "none",
        "--task", "modality", "--bootstrap", "0", "--device", "cpu",
    )  # fmt: skip
    stages = _stages(text)
    embedding = "embedding 8 dev images (test-vit/none)"  # the split and the model, as the tables name it
    assert (embedding, "start") in stages and (embedding, "done") in stages, text
    assert re.search(r"embedding 8 dev images \(test-vit/none\): start, 8 to do$", text, re.M), text
    assert re.search(r"embedding 8 dev images \(test-vit/none\): done  8/8 \(100%\)  in [\d.]+ s$", text, re.M), text
    assert text.index(f"{embedding}: done") < text.index("modality (test-vit/none)")
    assert "random weights" in text  # the warning, on stderr, lands in the same log
