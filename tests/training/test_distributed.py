"""Two CPU processes (gloo) compute the same loss and update as one process with the same global batch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training.conftest import read_jsonl

TORCHRUN = Path(sys.executable).with_name("torchrun")
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _finetune_args(data: Path, output: Path, batch: int) -> list[str]:
    return [
        "finetune", "--encoder", "test-vit", "--data", str(data), "--output", str(output), "--batch-size", str(batch),
        "--max-steps", "3", "--epochs", "1", "--lr", "1e-3", "--warmup", "0", "--log-every", "1",
        "--val-split", "none", "--seed", "3", "--device", "cpu", "--json",
    ]  # fmt: skip


@pytest.mark.skipif(not TORCHRUN.exists() and shutil.which("torchrun") is None, reason="torchrun not installed")
def test_torchrun_two_processes_match_one_process(small_medpix, tmp_path):
    from safetensors.torch import load_file

    torchrun = str(TORCHRUN) if TORCHRUN.exists() else shutil.which("torchrun")
    env = {**os.environ, **ENV}
    single = subprocess.run(
        [sys.executable, "-m", "medclip_cli.cli", *_finetune_args(small_medpix, tmp_path / "one", 8)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run(
        [torchrun, "--nproc-per-node", "2", "--master-port", str(_free_port()), "-m", "medclip_cli.cli",
         *_finetune_args(small_medpix, tmp_path / "two", 4)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    losses_one = [r["loss"] for r in read_jsonl(tmp_path / "one" / "metrics.jsonl") if r["type"] == "train"]
    losses_two = [r["loss"] for r in read_jsonl(tmp_path / "two" / "metrics.jsonl") if r["type"] == "train"]
    assert len(losses_one) == 3
    assert losses_two == pytest.approx(losses_one, rel=1e-5)
    assert losses_one[0] != pytest.approx(losses_one[2], rel=1e-3)  # the weights did move
    one, two = (
        load_file(str(tmp_path / "one" / "last" / "model.safetensors")),
        load_file(str(tmp_path / "two" / "last" / "model.safetensors")),
    )
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=2e-6, msg=lambda m, k=key: f"{k}: {m}")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loss_worker(rank: int, world: int, port: int, queue) -> None:
    import torch.distributed as dist

    from medclip_cli.training.loss import WeightedClipLoss

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    images, texts, _ = _global_batch()
    rows = slice(rank * 3, rank * 3 + 3)
    out = {}
    for soft, groups in _GROUPINGS.items():
        img = images[rows].clone().requires_grad_(True)
        txt = texts[rows].clone().requires_grad_(True)
        scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
        loss = WeightedClipLoss(0.3, soft_targets=soft is not False, rank=rank, world_size=world)(img, txt, scale, groups[rows])
        loss.backward()
        # What DDP would do with the parameters' gradients: average over ranks.
        grads = [img.grad.clone(), txt.grad.clone(), scale.grad.clone().reshape(1)]
        dist.all_reduce(grads[2])
        # As numpy arrays: pickled by value. A tensor would travel as a shared-memory file
        # descriptor that the parent can no longer fetch once this process has exited.
        out[soft] = (float(loss.detach()), *((g / world).numpy() for g in grads))
    queue.put((rank, out))
    # Rank 0 hosts the rendezvous store: leaving before rank 1 is done resets its connection.
    dist.barrier()
    dist.destroy_process_group()


def _global_batch():
    g = torch.Generator().manual_seed(11)
    images = torch.randn(6, 5, generator=g, dtype=torch.float64)
    texts = torch.randn(6, 5, generator=g, dtype=torch.float64)
    return images, texts, torch.tensor([0, 1, 0, 2, 1, 0])


# Hard targets; caption groups; label keys (text key, caption group, modality key, region key),
# where texts 0, 2 and 3 are label prompts: an asymmetric text-to-image relation.
_GROUPINGS = {
    False: torch.tensor([0, 1, 2, 3, 4, 5]),
    "captions": torch.tensor([0, 1, 0, 2, 1, 0]),
    "label keys": torch.tensor(
        [[10, 0, 10, 20], [1, 1, 11, 21], [20, 0, 11, 20], [11, 2, 11, -1], [1, 1, 10, 21], [3, 3, 10, 20]]
    ),
}


def test_gathered_loss_and_gradients_equal_the_global_batch():
    import torch.multiprocessing as mp

    from medclip_cli.training.loss import WeightedClipLoss

    port = _free_port()
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    procs = [ctx.Process(target=_loss_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get() for _ in procs)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    images, texts, _ = _global_batch()
    for soft, groups in _GROUPINGS.items():
        img, txt = images.clone().requires_grad_(True), texts.clone().requires_grad_(True)
        scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
        loss = WeightedClipLoss(0.3, soft_targets=soft is not False)(img, txt, scale, groups)
        loss.backward()
        mean_loss = sum(results[r][soft][0] for r in range(2)) / 2
        assert mean_loss == pytest.approx(float(loss.detach()), rel=1e-6)
        # A rank's feature gradient, divided by the world size as DDP's mean does, is the global one.
        got_img = torch.cat([torch.from_numpy(results[r][soft][1]) for r in range(2)])
        got_txt = torch.cat([torch.from_numpy(results[r][soft][2]) for r in range(2)])
        torch.testing.assert_close(got_img, img.grad, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(got_txt, txt.grad, rtol=1e-5, atol=1e-7)
        assert float(results[0][soft][3]) == pytest.approx(float(scale.grad), rel=1e-5)
