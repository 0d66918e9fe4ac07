"""A stop request that abandons a streamed step half-way, then ``--resume``: over the epoch every
sample is trained on exactly once, as in an uninterrupted run.

The run streams shards of one batch each in their own order (a shuffle buffer of one sample), so
a checkpoint between steps can account for every sample by whole shards. The stop (SIGINT, as
Ctrl-C) arrives inside the forward of the step's last micro-batch, after the step's batches were
handed out, one of them finishing its shard: that shard must not count as done in the checkpoint
written then, or the resumed run would skip its samples.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from dataclasses import replace

import pytest

from medclip_cli.training import checkpoint as ckpt
from medclip_cli.training.config import TrainConfig
from medclip_cli.training.train import TrainingInterrupted, train
from tests.data.test_shard_stream import write_shard_set


@pytest.fixture
def recorder(monkeypatch):
    """Every streamed micro-batch handed to the trainer, as (micro-batch index, its sample keys);
    ``stop_at`` n: SIGINT inside the n-th forward (1-based) of the run."""
    from medclip_cli.runtime import forward
    from medclip_cli.training.stream_batches import StreamBatches

    state = {"batches": [], "forwards": 0, "stop_at": None}
    real_batch, real_forward = StreamBatches._batch, forward.ClipStep.forward

    def batch(self, item, epoch, micro):
        state["batches"].append((micro, list(item["keys"])))
        return real_batch(self, item, epoch, micro)

    def forward_(self, *args, **kwargs):
        out = real_forward(self, *args, **kwargs)
        state["forwards"] += 1
        if state["forwards"] == state["stop_at"]:
            os.kill(os.getpid(), signal.SIGINT)  # the step's compute is still running: abandoned
        return out

    monkeypatch.setattr(StreamBatches, "_batch", batch)
    monkeypatch.setattr(forward.ClipStep, "forward", forward_)
    return state


def _config(shards, out, grad_accum: int) -> TrainConfig:
    return TrainConfig(
        output=out, data=shards, split="all", val_split=None, encoder="test-vit", pretrained="none", stream=True,
        epochs=1, batch_size=4, grad_accum=grad_accum, shuffle_buffer=1, workers=0, seed=5, device="cpu",
        precision="fp32", checkpoint_every=0,
    )  # fmt: skip


@pytest.mark.parametrize(("grad_accum", "stop_in_forward"), [(2, 4), (1, 3)], ids=["accumulated-step", "one-batch-step"])
def test_a_stop_inside_a_streamed_step_leaves_its_shards_to_the_resumed_run(tmp_path, recorder, grad_accum, stop_in_forward):
    every_key = write_shard_set(tmp_path / "shards", [4] * 6)  # 6 shards of one batch: 6 micro-batches
    reference = train(_config(tmp_path / "shards", tmp_path / "ref", grad_accum))
    assert reference.steps == 6 // grad_accum
    uninterrupted = Counter(k for _, keys in recorder["batches"] for k in keys)
    assert uninterrupted == Counter(every_key)  # the set-up: one epoch trains on every sample once

    recorder.update(batches=[], forwards=0, stop_at=stop_in_forward)
    cfg = _config(tmp_path / "shards", tmp_path / "run", grad_accum)
    with pytest.raises(TrainingInterrupted):
        train(cfg)
    state = ckpt.load_checkpoint(ckpt.find_checkpoint(tmp_path / "run")).state
    applied = state["position"] * grad_accum  # micro-batches of completed steps
    assert state["step"] == 2 // grad_accum and applied == 2
    handed_out = recorder["batches"]
    assert len(handed_out) == stop_in_forward  # the abandoned step's batches were taken, one finishing its shard
    trained = [k for micro, keys in handed_out if micro < applied for k in keys]
    assert state["stream"] == {"epoch": 0, "done": sorted({k.split("/")[0] for k in trained})}

    recorder.update(batches=[], stop_at=None)
    resumed = train(replace(cfg, resume=True))
    assert resumed.steps == reference.steps
    trained += [k for _, keys in recorder["batches"] for k in keys]
    assert Counter(trained) == uninterrupted  # none skipped, none twice
