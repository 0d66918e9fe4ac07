"""A stop request honoured in the middle of a long step or a long validation, resumed exactly.

A driver script makes one forward (or the first validation) hang for two minutes and writes a
marker when it gets there; the test sends SIGINT then. The run must abandon that step (or the
validation) at once, checkpoint the last completed step, exit 130, and ``--resume`` must replay the
abandoned work and end with bit-for-bit the weights of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.reliability import inputs as make

# One thread: the same arithmetic in every process, so runs can be compared bit for bit.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

_DRIVER = """
import json, os, sys, time
from medclip_cli.runtime import forward
from medclip_cli.training import checkpoint, train

hang_at, what = int(os.environ["HANG_AT"]), os.environ["HANG_IN"]
calls, log = [0], os.environ["TIMES_LOG"]


def note(event):
    with open(log, "a") as fh:
        fh.write(json.dumps({"event": event, "t": time.time()}) + "\\n")


def hang():
    note("hanging")
    time.sleep(120)


real_forward, real_validate, real_save = forward.ClipStep.forward, train.validate, checkpoint.save_checkpoint


def slow_forward(self, *args, **kwargs):
    calls[0] += 1
    out = real_forward(self, *args, **kwargs)
    if what == "forward" and calls[0] == hang_at:
        hang()
    return out


def slow_validate(*args, **kwargs):
    if what == "validation":
        hang()
    return real_validate(*args, **kwargs)


def timed_save(*args, **kwargs):
    note("checkpoint-start")
    return real_save(*args, **kwargs)


forward.ClipStep.forward, train.validate, checkpoint.save_checkpoint = slow_forward, slow_validate, timed_save
from medclip_cli.cli import main
sys.argv = ["medclip", *sys.argv[1:]]
main()
"""


def _data(root: Path) -> Path:
    lines = [f"img/a{i}.png,scan number {i},{'CT' if i % 2 else 'MR'},{'dev' if i >= 8 else 'train'}" for i in range(12)]
    return make.csv_set(root, lines, images=12)


def _args(data: Path, out: Path) -> list[str]:
    return [
        "finetune", "--encoder", "test-vit", "--data", str(data), "--output", str(out), "--epochs", "2",
        "--batch-size", "2", "--augment", "--ema-decay", "0.9", "--seed", "3", "--device", "cpu", "--json",
        "--val-task", "modality", "--checkpoint-every", "0",
    ]  # fmt: skip


def _medclip(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "medclip_cli.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("stop")
    data = _data(root / "data")
    out = root / "reference"
    result = _medclip(*_args(data, out))
    assert result.returncode == 0, result.stderr
    return data, out


def _interrupt(tmp_path: Path, data: Path, hang_in: str, hang_at: int = 0) -> tuple[Path, str, dict]:
    out, log = tmp_path / "run", tmp_path / "times.jsonl"
    driver = make.write(tmp_path / "driver.py", textwrap.dedent(_DRIVER))
    env = {**ENV, "HANG_IN": hang_in, "HANG_AT": str(hang_at), "TIMES_LOG": str(log)}
    proc = subprocess.Popen(
        [sys.executable, str(driver), *_args(data, out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    )  # fmt: skip

    def events() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    deadline = time.monotonic() + 240
    while not any(e["event"] == "hanging" for e in events()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run never reached the long part: {proc.communicate()[1][-2000:]}")
        time.sleep(0.02)
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=100)  # far less than the two minutes the step would take
    exited = time.time()
    saves = [e["t"] for e in events() if e["event"] == "checkpoint-start" and e["t"] >= sent]
    assert proc.returncode == 130, stderr
    assert saves, "no checkpoint was written after the stop request"
    timing = {"to_checkpoint_s": saves[0] - sent, "to_exit_s": exited - sent}
    return out, stderr, timing


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "last" / "model.safetensors"))


def _assert_same_run(a: Path, b: Path) -> None:
    import torch

    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    assert [k for k in wa if not torch.equal(wa[k], wb[k])] == []
    rows = [[json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()] for run in (a, b)]
    epochs = [[r for r in run if r["type"] == "epoch"] for run in rows]
    assert epochs[0] == epochs[1]  # the same validation numbers, one line per epoch
    steps = [r["step"] for r in rows[1] if r["type"] == "train"]
    assert steps == sorted(set(steps))


def test_a_stop_request_abandons_a_long_step_and_resume_replays_it_exactly(reference, tmp_path):
    data, ref = reference
    # 8 training pairs, batches of 2: 4 steps per epoch; forward 6 is step 6 (epoch 2, its 2nd step).
    out, stderr, timing = _interrupt(tmp_path, data, "forward", hang_at=6)
    assert "interrupted at step 5;" in stderr  # the last completed step, not the abandoned one
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-00000005"
    assert timing["to_checkpoint_s"] < 5, timing  # honoured at once (about 0.1 s here), not after the step
    resumed = _medclip("finetune", "--output", str(out), "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_run(ref, out)
    finished = _medclip("finetune", "--output", str(out), "--resume", "--json")  # a finished run resumes to its end
    assert finished.returncode == 0, finished.stderr
    _assert_same_run(ref, out)


def test_a_stop_request_during_validation_keeps_the_epochs_steps_and_resume_validates_again(reference, tmp_path):
    data, ref = reference
    out, stderr, timing = _interrupt(tmp_path, data, "validation")
    assert "interrupted at step 4;" in stderr  # every step of epoch 1 done, its end not yet
    assert timing["to_checkpoint_s"] < 5, timing
    assert not (out / "last").exists()  # nothing of the abandoned epoch end was written
    resumed = _medclip("finetune", "--output", str(out), "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_run(ref, out)
