"""Faults during training: a full disk while checkpointing, SIGKILL in the middle of a checkpoint write.

Ctrl-C (SIGINT → checkpoint, exit 130, the resume command) and SIGKILL between checkpoints are
tested in tests/training/test_resume.py; a non-finite loss there too.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from medclip_cli.training import checkpoint
from tests.conftest import message_lines
from tests.reliability import inputs as make


def _finetune_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "finetune", "--encoder", "test-vit", "--data", str(data), "--output", str(out), "--val-split", "none",
        "--epochs", "1", "--batch-size", "2", "--checkpoint-every", "1", "--device", "cpu", *extra,
    ]  # fmt: skip


def _steps(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def _assert_loadable(path: Path, step: int) -> None:
    from medclip_cli.models.bundle import load_bundle

    assert checkpoint.load_checkpoint(path).state["step"] == step
    load_bundle(path)  # the weights and config of the checkpoint load as a model


def test_disk_full_while_checkpointing_stops_clearly_and_keeps_the_last_good_checkpoint(cli, tmp_path, monkeypatch):
    data = make.csv_set(tmp_path / "data", images=8)
    out = tmp_path / "run"
    real_save, calls = checkpoint.torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:  # the second checkpoint: the disk fills up half-way through the file
            with open(f, "wb") as fh:
                fh.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", save)
    result = cli(*_finetune_args(data, out, "--max-steps", "4"))

    assert result.exit_code == 1, result.output
    lines = message_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "No space left on device" in lines[0] and str(out / "checkpoints") in lines[0]
    assert "--resume" in lines[0]  # what to do once there is space again
    assert _steps(out) == ["latest", "step-00000001"]  # no half-written folder left behind
    found = checkpoint.find_checkpoint(out)
    assert found is not None and found.name == "step-00000001"
    _assert_loadable(found, 1)


_SLOW_WRITER = """
import os, sys, time
from medclip_cli.training import checkpoint

real_save, calls = checkpoint.torch.save, []

def save(obj, f, *args, **kwargs):
    calls.append(f)
    if len(calls) == 2:  # the second checkpoint: stall half-way through writing its state
        with open(f, "wb") as fh:
            fh.write(b"PK" + b"\\0" * 1000)
            fh.flush()
            open(os.environ["WRITING_MARKER"], "w").close()
            time.sleep(120)
    return real_save(obj, f, *args, **kwargs)

checkpoint.torch.save = save
from medclip_cli.cli import main
sys.argv = ["medclip", *sys.argv[1:]]
main()
"""


def test_sigkill_while_a_checkpoint_is_written_leaves_the_previous_one_loadable(cli, tmp_path):
    data = make.csv_set(tmp_path / "data", images=8)
    out, marker = tmp_path / "run", tmp_path / "writing"
    driver = make.write(tmp_path / "driver.py", textwrap.dedent(_SLOW_WRITER))
    env = {**os.environ, "WRITING_MARKER": str(marker), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(driver), *_finetune_args(data, out, "--max-steps", "4")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run never reached its second checkpoint: {proc.communicate()[1][-2000:]}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    assert any(p.name.startswith(".step-00000002.tmp-") for p in (out / "checkpoints").iterdir())  # killed mid-write
    found = checkpoint.find_checkpoint(out)
    assert found is not None and found.name == "step-00000001"
    _assert_loadable(found, 1)

    resumed = cli("finetune", "--output", out, "--resume", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert _steps(out) == ["latest", "step-00000004"]  # resumed to the end; the stale temp folder is gone
