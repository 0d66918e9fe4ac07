"""``finetune --stream`` end to end on shards of the real MedPix 2.0: a streamed run, nothing
unpacked or cached, resume at an epoch boundary (bit for bit) and inside an epoch (the shards not
done yet)."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from medclip_cli.progress import NullProgress
from medclip_cli.training.config import TrainConfig
from medclip_cli.training.train import TrainEvents, TrainingInterrupted, train
from tests.training.conftest import read_jsonl


@pytest.fixture(scope="module")
def medpix_shards(small_medpix, tmp_path_factory) -> Path:
    """48 training pairs of MedPix 2.0 in 4 shards of 12, 16 validation pairs in 2 (written by
    ``data shard``'s engine)."""
    from medclip_cli.data import load_dataset
    from medclip_cli.data.shards import write_shards

    out = tmp_path_factory.mktemp("medpix_shards")
    for split, n in (("train", 48), ("dev", 16)):
        dataset = load_dataset(small_medpix, split)
        dataset.samples = dataset.samples[:n]
        write_shards(dataset, out / split, 12)
    return out


def _config(shards: Path, out: Path, **settings) -> TrainConfig:
    base = dict(
        output=out, data=shards, encoder="test-vit", pretrained="none", stream=True, epochs=2, batch_size=8,
        shuffle_buffer=16, augment=True, seed=5, device="cpu", precision="fp32", checkpoint_every=0,
    )  # fmt: skip
    return TrainConfig(**{**base, **settings})


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "last" / "model.safetensors"))


def test_a_streamed_finetune_runs_two_epochs_and_writes_nothing_to_the_caches(cli, medpix_shards, tmp_path, _isolated_home):
    out = tmp_path / "run"
    result = cli(
        "finetune", "--encoder", "test-vit", "--data", medpix_shards, "--stream", "--workers", "2", "--epochs", "2",
        "--batch-size", "8", "--val-split", "none", "--device", "cpu", "--output", out, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    epochs = [r for r in read_jsonl(out / "metrics.jsonl") if r["type"] == "epoch"]
    assert [(r["epoch"], r["step"]) for r in epochs] == [(1, 6), (2, 12)]  # 48 pairs (sizes.json) / 8
    assert (out / "last" / "model.safetensors").is_file()
    cache = _isolated_home / "cache"
    assert not (cache / "shards").exists() and not (cache / "pixels").exists()  # nothing unpacked or decoded to disk


class _StopAt(TrainEvents, NullProgress):
    """Asks the run to stop (as Ctrl-C does) after the first validation, or after ``step`` steps."""

    def __init__(self, step: int | None = None) -> None:
        self.step, self.steps = step, 0

    def task(self, description: str, total: int | None = None) -> object:
        return description

    def advance(self, task: object, n: int = 1, **fields: object) -> None:
        if str(task).startswith("epoch") and fields:
            self.steps += n
            if self.steps == self.step:
                os.kill(os.getpid(), signal.SIGINT)

    def on_validation(self, record: dict) -> None:
        if self.step is None and record["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)


def test_resume_at_an_epoch_boundary_gives_the_same_weights_bit_for_bit(medpix_shards, tmp_path):
    import torch

    reference = train(_config(medpix_shards, tmp_path / "ref", workers=2))
    stop = _StopAt()
    with pytest.raises(TrainingInterrupted):
        train(_config(medpix_shards, tmp_path / "run", workers=2), stop, stop)
    resumed = train(_config(medpix_shards, tmp_path / "run", workers=2, resume=True))
    assert resumed.steps == reference.steps == 12
    a, b = _weights(tmp_path / "ref"), _weights(tmp_path / "run")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_inside_an_epoch_reads_the_shards_not_done_then_whole_epochs(medpix_shards, tmp_path, monkeypatch):
    from medclip_cli.data import shard_stream
    from medclip_cli.training import checkpoint as ckpt

    reads: list[tuple[str, bool]] = []
    real = shard_stream.read_shard

    def recording(tar, primary=True):  # the real reader, noting which shard it opens
        reads.append((tar.name, primary))
        return real(tar, primary)

    monkeypatch.setattr(shard_stream, "read_shard", recording)
    cfg = _config(medpix_shards, tmp_path / "run", workers=0, shuffle_buffer=4, val_split=None)
    stop = _StopAt(step=3)
    with pytest.raises(TrainingInterrupted):
        train(cfg, stop, stop)
    state = ckpt.load_checkpoint(ckpt.find_checkpoint(tmp_path / "run")).state
    assert (state["step"], state["position"]) == (3, 3)
    done = state["stream"]["done"]
    assert state["stream"]["epoch"] == 0 and 1 <= len(done) <= 2  # 24 pairs taken: at most 2 shards of 12 whole
    names = [f"{k:05d}.tar" for k in range(4)]
    first_epoch = shard_stream.epoch_shards(names, 5, 0)
    assert [n for n, _ in reads if n in done] == [n for n in first_epoch if n in done]
    reads.clear()
    resumed = train(replace(cfg, resume=True))
    assert resumed.steps == 12
    primary = [n for n, p in reads if p]
    rest = [n for n in first_epoch if n not in done]
    assert primary[-4:] == shard_stream.epoch_shards(names, 5, 1)  # epoch 2: every shard, in its own order
    head = primary[:-4]  # the rest of epoch 1: the shards not done, in the epoch's order, until its steps are full
    assert head == rest[: len(head)] and len(head) >= len(rest) - 1
    assert {n for n, p in reads if not p} <= set(first_epoch)  # any top-up re-reads the rank's own shards


def test_torchrun_two_processes_stream_their_own_shards_and_checkpoint_both_ranks_done(medpix_shards, tmp_path):
    import shutil
    import subprocess
    import sys

    from medclip_cli.data import shard_stream
    from medclip_cli.training import checkpoint as ckpt
    from tests.training.test_distributed import ENV, TORCHRUN, _free_port

    torchrun = str(TORCHRUN) if TORCHRUN.exists() else shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not installed")
    out = tmp_path / "two"
    run = subprocess.run(
        [torchrun, "--nproc-per-node", "2", "--master-port", str(_free_port()), "-m", "medclip_cli.cli", "finetune",
         "--encoder", "test-vit", "--data", str(medpix_shards), "--stream", "--workers", "1", "--shuffle-buffer", "4",
         "--batch-size", "4", "--epochs", "1", "--max-steps", "5", "--val-split", "none", "--seed", "3",
         "--device", "cpu", "--output", str(out), "--json"],
        capture_output=True, text=True, env={**os.environ, **ENV}, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    state = ckpt.load_checkpoint(ckpt.find_checkpoint(out)).state
    assert state["step"] == 5 and state["stream"]["epoch"] == 0  # 5 of the epoch's 6 steps (48 / (4 × 2))
    order = shard_stream.epoch_shards([f"{k:05d}.tar" for k in range(4)], 3, 0)
    done = set(state["stream"]["done"])
    for rank in range(2):  # rank 1's finished shards reach rank 0's checkpoint too
        assert done & set(shard_stream.split_shards(order, rank, 2, 0, 1))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--stream", "--label-text-field", "modality", "--label-text-prob", "0.5"], "--label-text-prob does not work with --stream"),
        (["--stream", "--shuffle-buffer", "0"], "--shuffle-buffer must be a positive whole number"),
        (["--samples-per-epoch", "100"], "--samples-per-epoch applies to --stream"),
    ],
)
def test_stream_settings_that_cannot_work_are_one_line_usage_errors(cli, tmp_path, extra, message):
    result = cli("finetune", "--encoder", "test-vit", "--data", tmp_path, "--output", tmp_path / "run", "--device", "cpu", *extra)
    assert result.exit_code == 2 and message in result.output, result.output


def test_stream_over_a_data_set_that_is_not_shards_names_it(cli, small_medpix, tmp_path):
    result = cli("finetune", "--encoder", "test-vit", "--data", small_medpix, "--stream", "--output", tmp_path / "run", "--device", "cpu")
    assert result.exit_code == 2 and "is not a folder of WebDataset .tar shards" in result.output, result.output
