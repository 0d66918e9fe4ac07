"""Exact resume after SIGKILL and Ctrl-C, the non-finite-loss guard, and resume errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.training.conftest import read_jsonl

# One thread: the same arithmetic in every process, so runs can be compared bit for bit.
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _args(data: Path, output: Path) -> list[str]:
    return [
        "finetune", "--encoder", "test-vit", "--data", str(data), "--output", str(output),
        "--epochs", "2", "--batch-size", "8", "--checkpoint-every", "5", "--augment", "--seed", "7",
        "--val-task", "modality", "--device", "cpu", "--json",
        "--ema-decay", "0.9",  # the bundles hold the weight average: resuming must restore it too
    ]  # fmt: skip


def _medclip(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medclip_cli.cli", *args], capture_output=True, text=True,
        env={**os.environ, **ENV}, timeout=300, **kwargs,
    )  # fmt: skip


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "medclip_cli.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, **ENV},
    )  # fmt: skip


def _latest_step(run: Path) -> int:
    pointer = run / "checkpoints" / "latest"
    try:
        return int(pointer.read_text().strip().removeprefix("step-"))
    except (OSError, ValueError):
        return -1


def _wait_for_checkpoint(proc: subprocess.Popen, run: Path, at_least: int) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        step = _latest_step(run)
        if step >= at_least:
            return step
        if proc.poll() is not None:
            pytest.fail(
                f"the run ended (rc {proc.returncode}) before checkpoint {at_least}: {proc.stderr.read()[-2000:]}"
            )
        time.sleep(0.005)
    pytest.fail("no checkpoint appeared in time")


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "last" / "model.safetensors"))


def _assert_identical(a: Path, b: Path) -> None:
    import torch

    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    epochs_a = [r for r in read_jsonl(a / "metrics.jsonl") if r["type"] == "epoch"]
    epochs_b = [r for r in read_jsonl(b / "metrics.jsonl") if r["type"] == "epoch"]
    assert epochs_a == epochs_b  # same validation numbers, one line per epoch (no duplicates)
    steps_b = [r["step"] for r in read_jsonl(b / "metrics.jsonl") if r["type"] == "train"]
    assert steps_b == sorted(set(steps_b))


@pytest.fixture(scope="module")
def reference_run(small_medpix, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    result = _medclip(*_args(small_medpix, out))
    assert result.returncode == 0, result.stderr
    return out


def test_sigkill_mid_epoch_then_resume_gives_identical_weights(small_medpix, reference_run, tmp_path):
    out = tmp_path / "run"
    proc = _start(*_args(small_medpix, out))
    step = _wait_for_checkpoint(proc, out, at_least=15)  # 12 steps per epoch: inside epoch 2
    assert proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert step % 12 != 0 and step < 24
    resumed = _medclip("finetune", "--output", str(out), "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    _assert_identical(reference_run, out)


def test_ctrl_c_saves_a_checkpoint_and_exits_130_with_the_resume_command(small_medpix, tmp_path):
    out = tmp_path / "run"
    proc = _start(*_args(small_medpix, out))
    _wait_for_checkpoint(proc, out, at_least=5)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert f"--output {out} --resume" in stderr
    step = int(stderr.split("interrupted at step ")[1].split(";")[0])
    assert _latest_step(out) == step >= 5  # the checkpoint holds the very step it stopped at


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_exits_130_and_resumes_exactly(small_medpix, reference_run, tmp_path):
    out = tmp_path / "run"
    proc = _start(*_args(small_medpix, out))
    _wait_for_checkpoint(proc, out, at_least=5)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted at step" in stderr and f"--output {out} --resume" in stderr
    assert _latest_step(out) >= 5
    resumed = _medclip("finetune", "--output", str(out), "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    _assert_identical(reference_run, out)


def test_resume_with_nothing_to_resume_is_a_clear_error(cli, small_medpix, tmp_path):
    result = cli("finetune", "--encoder", "test-vit", "--data", small_medpix, "--output", tmp_path / "none", "--resume")
    assert result.exit_code == 1
    assert "nothing to resume" in result.output and "without --resume" in result.output


def test_resume_refuses_changed_settings(cli, reference_run):
    result = cli("finetune", "--output", reference_run, "--resume", "--lr", "0.1")
    assert result.exit_code == 2
    assert "--resume: --lr is 0.1" in result.output


def test_existing_run_folder_is_not_overwritten(cli, small_medpix, reference_run):
    result = cli("finetune", "--encoder", "test-vit", "--data", small_medpix, "--output", reference_run)
    assert result.exit_code == 1
    assert "already exists" in result.output and "--resume" in result.output


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(cli, small_medpix, tmp_path):
    out = tmp_path / "run"
    result = cli(
        "finetune", "--encoder", "test-vit", "--data", small_medpix, "--output", out, "--lr", "1e30",
        "--warmup", "0", "--checkpoint-every", "1", "--val-split", "none", "--batch-size", "8",
        "--max-steps", "3", "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "the loss became nan at step 2" in result.output
    assert "step-00000001" in result.output
    assert _latest_step(out) == 1
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-00000001"]


def test_deferred_guard_skips_the_update_and_stops_before_writing(cli, small_medpix, tmp_path, monkeypatch):
    """The GPU's way (no read-back per step) run on the CPU's fused AdamW, which takes ``found_inf``
    too: the non-finite step's update is skipped on the device, the run goes on until the next
    read, and stops there without writing a bundle or a checkpoint."""
    from medclip_cli.training.guard import FiniteGuard

    original = FiniteGuard.__init__

    def deferred(self, *args):
        original(self, *args)
        self.deferred = True

    monkeypatch.setattr(FiniteGuard, "__init__", deferred)
    out = tmp_path / "run"
    result = cli(
        "finetune", "--encoder", "test-vit", "--data", small_medpix, "--output", out, "--lr", "1e30",
        "--warmup", "0", "--checkpoint-every", "0", "--log-every", "10", "--val-split", "none",
        "--batch-size", "8", "--max-steps", "4", "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "the loss became nan at step 2" in result.output
    assert "its update was skipped and the run stopped at step 4" in result.output
    assert not (out / "last").exists() and not (out / "checkpoints").exists()


def test_deferred_guard_skips_exactly_the_bad_update():
    """With ``found_inf`` set, the fused AdamW leaves weights, moments and step count untouched."""
    import torch

    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([p], lr=0.1, fused=True)
    p.grad = torch.full((3,), float("nan"))
    opt.found_inf = torch.ones(())
    opt.step()
    assert torch.equal(p.detach(), torch.ones(3)) and float(opt.state[p]["step"]) == 0
    del opt.found_inf
    p.grad = torch.ones(3)
    opt.step()
    assert float(opt.state[p]["step"]) == 1 and bool((p.detach() < 1).all())
