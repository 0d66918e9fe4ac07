"""The CUDA path, where a GPU is lent: ``python -m pytest -m gpu tests/training/test_gpu.py``.

Skipped without a CUDA device (and deselected by default, like ``slow``). The step's promise on a
GPU is that it never waits for the device: the sync-debug test fails on any operation in the step
that reads the device back (``.item()``, a blocking copy, a data-dependent shape).
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from tests.training.conftest import read_jsonl

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_batches_for_a_gpu_are_gathered_into_pinned_memory():
    import numpy as np

    from medclip_cli.training.batches import _gather, _tensor

    source = (np.arange(10 * 4 * 4 * 3) % 251).astype(np.uint8).reshape(10, 4, 4, 3)
    idx = np.array([3, 1, 3, 9])
    for made in (_gather(source, idx, pin=True), _tensor(source[idx], pin=True)):
        assert made.is_pinned() and torch.equal(made, torch.from_numpy(source[idx]))


def _step_run(encoder: str, batch: int = 16):
    from benchmarks.step_ceiling import captions_for, make_step_run, memory_batches

    run = make_step_run(encoder, batch_size=batch, device="cuda", precision="bf16")
    return run, memory_batches(run, captions_for(None, "train", 4 * batch))


@pytest.mark.parametrize("encoder", ["test-vit", "test-resnet"])
def test_a_training_step_never_reads_the_device_back(encoder):
    from benchmarks.step_ceiling import cycle, device_reads

    run, batches = _step_run(encoder)
    it = cycle(batches)
    run.train_step(it)  # the first step creates what is cached (normalisation constants, optimizer state)
    syncs = device_reads(run, it, 3)
    assert not syncs, "\n".join(syncs)
    run._check_finite()


def test_a_non_finite_loss_skips_the_update_on_the_device_and_stops_the_run(cli, small_medpix, tmp_path):
    out = tmp_path / "run"
    result = cli(
        "finetune", "--encoder", "test-vit", "--data", small_medpix, "--output", out, "--lr", "1e30",
        "--warmup", "0", "--checkpoint-every", "0", "--val-split", "none", "--batch-size", "8",
        "--max-steps", "3", "--device", "cuda", "--precision", "bf16",
    )  # fmt: skip
    assert result.exit_code == 1
    assert re.search(r"the loss became (nan|inf) at step 2", result.output), result.output
    assert "its update was skipped" in result.output
    assert not (out / "last").exists() and not (out / "checkpoints").exists()


def test_bf16_finetune_trains_and_its_bundle_classifies(cli, small_medpix, tmp_path):
    out = tmp_path / "run"
    result = cli(
        "finetune", "--encoder", "test-resnet", "--data", small_medpix, "--output", out, "--batch-size", "16",
        "--max-steps", "12", "--log-every", "3", "--val-task", "modality", "--workers", "2", "--augment",
        "--soft-targets", "--device", "cuda", "--precision", "bf16", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    records = read_jsonl(out / "metrics.jsonl")
    train = [r for r in records if r["type"] == "train"]
    assert len(train) >= 4 and all(math.isfinite(r["loss"]) for r in train)
    assert any(r["type"] == "epoch" and math.isfinite(r["val_loss"]) for r in records)
    image = next((small_medpix / "MedPix-2-0" / "images").resolve().glob("*.png"))
    result = cli(
        "classify", str(image), "--model", out / "last", "--label", "CT scan", "--label", "MRI", "--device", "cuda",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert '"CT scan"' in result.output


def test_compiled_blocks_train_like_eager_ones():
    """``--compile`` changes kernels, not the model: the same losses to bf16 rounding."""
    from benchmarks.step_ceiling import cycle

    losses = []
    for compiled in (False, True):
        torch.manual_seed(0)
        run, batches = _step_run("test-vit")
        if compiled:
            from medclip_cli.runtime.kernels import compile_blocks

            assert compile_blocks(run.model.module) > 0
        it = cycle(batches)
        losses.append([float(run.train_step(it)) for _ in range(4)])
    torch.testing.assert_close(losses[1], losses[0], rtol=2e-2, atol=2e-2)
