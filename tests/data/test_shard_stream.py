"""Streaming shards (``finetune --stream``): the split over ranks × workers, the seeded shuffle
buffer, uneven shards, sample counts, and bad tars."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from medclip_cli.data.preprocess import PreprocessConfig
from medclip_cli.data.shard_stream import epoch_shards, open_shard_set, split_shards
from medclip_cli.errors import DataError, UsageError
from medclip_cli.training.config import TrainConfig
from medclip_cli.training.distributed import DistInfo

from .conftest import write_png


def _png_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def write_shard_set(folder: Path, sizes: list[int], sizes_json: bool = True) -> list[str]:
    """Shards ``00000.tar``... of PNG + .txt samples (keys s<shard>_<k>); returns every key."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = []
    for s, n in enumerate(sizes):
        with tarfile.open(folder / f"{s:05d}.tar", "w") as archive:
            for k in range(n):
                key = f"s{s}_{k}"
                _add(archive, f"{key}.png", _png_bytes(1000 * s + k))
                _add(archive, f"{key}.txt", f"caption of {key}".encode())
                keys.append(f"{s:05d}.tar/{key}")
    if sizes_json:
        (folder / "sizes.json").write_text(json.dumps({f"{s:05d}.tar": n for s, n in enumerate(sizes)}))
    return keys


class _Model:
    """The two things a stream needs of a model: its input size and a tokenizer (open_clip's)."""

    def __init__(self) -> None:
        import open_clip

        self.preprocess = PreprocessConfig(image_size=12)
        self.tokenize = open_clip.get_tokenizer("ViT-B-32")


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


def _stream(folder: Path, *, rank=0, world=1, epoch=0, count=None, log=None, **settings):
    from medclip_cli.training.stream_batches import StreamBatches, StreamSource

    import torch

    cfg = TrainConfig(output=folder / "run", data=folder, split="all", stream=True, **settings)
    source = StreamSource(open_shard_set(folder, "all", cfg.samples_per_epoch), _Model())
    per_rank = len(source) // (cfg.batch_size * world) if count is None else count
    batches = StreamBatches(source, cfg, torch.device("cpu"), DistInfo(rank, world), [(epoch, 0, per_rank)], progress=log)
    keys = []
    for pixels, tokens, groups, augment in batches:
        assert pixels.shape == (cfg.batch_size, 12, 12, 3) and tokens.shape[0] == cfg.batch_size
        keys.append(list(batches.keys))
    return keys


def test_every_shard_one_rank_and_worker_and_every_sample_once_per_epoch(tmp_path):
    all_keys = write_shard_set(tmp_path / "s", [6] * 8)
    order = epoch_shards([f"{s:05d}.tar" for s in range(8)], seed=3, epoch=1)
    parts = [split_shards(order, r, 2, w, 2) for r in range(2) for w in range(2)]
    assert sorted(sum(parts, [])) == sorted(order) and all(len(p) == 2 for p in parts)
    seen = []
    for rank in range(2):  # two ranks simulated, each with two real DataLoader worker processes
        batches = _stream(tmp_path / "s", rank=rank, world=2, epoch=1, batch_size=3, workers=2, shuffle_buffer=4, seed=3)
        assert len(batches) == 8  # 48 samples / (3 × 2 ranks)
        seen += [k for batch in batches for k in batch]
    assert sorted(seen) == sorted(all_keys)  # none lost, none twice


def test_the_shuffle_buffer_is_seeded_and_shard_order_changes_per_epoch(tmp_path):
    write_shard_set(tmp_path / "s", [6] * 4)
    one = _stream(tmp_path / "s", batch_size=4, workers=0, shuffle_buffer=8, seed=1)
    assert one == _stream(tmp_path / "s", batch_size=4, workers=0, shuffle_buffer=8, seed=1)  # repeatable
    assert one != _stream(tmp_path / "s", batch_size=4, workers=0, shuffle_buffer=8, seed=2)
    assert one != _stream(tmp_path / "s", batch_size=4, workers=0, shuffle_buffer=8, seed=1, epoch=1)
    # A buffer of one sample keeps each shard's own order: only the shard order is shuffled.
    flat = [k for b in _stream(tmp_path / "s", batch_size=4, workers=0, shuffle_buffer=1, seed=1) for k in b]
    shards = [flat[i : i + 6] for i in range(0, 24, 6)]
    assert [s[0].split("/")[0] for s in shards] == epoch_shards([f"{s:05d}.tar" for s in range(4)], 1, 0)
    assert all(s == sorted(s, key=lambda k: int(k.rsplit("_", 1)[1])) for s in shards)
    buffered = [k for b in _stream(tmp_path / "s", batch_size=4, workers=0, shuffle_buffer=8, seed=1) for k in b]
    assert buffered != flat and sorted(buffered) == sorted(flat)  # the buffer mixes samples, loses none


def test_uneven_shards_still_give_every_rank_full_epochs_by_rereading_its_own(tmp_path):
    write_shard_set(tmp_path / "s", [6, 6, 6, 2])  # 20 samples: 5 batches of 2 per rank, 2 ranks
    per_rank = []
    for rank in range(2):
        keys = [k for b in _stream(tmp_path / "s", rank=rank, world=2, batch_size=2, workers=0, seed=0) for k in b]
        assert len(keys) == 10
        order = epoch_shards([f"{s:05d}.tar" for s in range(4)], 0, 0)
        own = set(split_shards(order, rank, 2, 0, 1))
        assert {k.split("/")[0] for k in keys} <= own  # a rank reads only its own shards
        per_rank.append(keys)
    short = [k for k in per_rank if len(set(k)) < 10]  # the rank holding the 2-sample shard tops up
    assert len(short) == 1 and len(set(short[0])) == 8


def test_sample_counts_come_from_sizes_json_else_from_the_headers(tmp_path, cli):
    write_shard_set(tmp_path / "a", [5, 3])
    assert len(open_shard_set(tmp_path / "a", "all")) == 8
    write_shard_set(tmp_path / "b", [5, 3], sizes_json=False)
    assert len(open_shard_set(tmp_path / "b", "all")) == 8
    assert len(open_shard_set(tmp_path / "b", "all", samples_per_epoch=6)) == 6
    import gzip

    (tmp_path / "g").mkdir()  # a gzip-compressed tar under a .tar name (tarfile reads it as it is)
    (tmp_path / "g" / "00000.tar").write_bytes(gzip.compress((tmp_path / "b" / "00000.tar").read_bytes()))
    assert len(open_shard_set(tmp_path / "g", "all")) == 5
    assert len(_stream(tmp_path / "g", batch_size=5, workers=0)) == 1
    write_png(tmp_path / "src" / "img" / "x.png", 1)
    (tmp_path / "src" / "pairs.csv").write_text("image,caption\nimg/x.png,one\n")
    assert cli("data", "shard", tmp_path / "src" / "pairs.csv", "--output", tmp_path / "c").exit_code == 0
    written = next(p for p in (tmp_path / "c").iterdir())
    assert json.loads((written / "sizes.json").read_text()) == {"00000.tar": 1}
    with pytest.raises(UsageError, match="not a folder of WebDataset .tar shards"):
        open_shard_set(tmp_path / "src", "all")


def test_bad_tars_are_skipped_and_counted_in_one_line_or_stop_a_strict_run(tmp_path):
    folder = tmp_path / "s"
    write_shard_set(folder, [6, 6], sizes_json=False)
    with tarfile.open(folder / "00002.tar", "w") as archive:
        _add(archive, "nocap.png", _png_bytes(1))  # no caption
        _add(archive, "bad.png", b"not a png at all")
        _add(archive, "bad.txt", b"a caption")
        _add(archive, "notes.txt", b"a caption without an image")
        for k in range(5):
            _add(archive, f"ok{k}.png", _png_bytes(50 + k))
            _add(archive, f"ok{k}.txt", b"fine")
    whole = (folder / "00002.tar").read_bytes()
    (folder / "00003.tar").write_bytes(whole[: len(whole) // 2])  # truncated mid-way
    counted = open_shard_set(folder, "all", samples_per_epoch=20)
    assert len(counted) == 20
    log = _Log()
    keys = _stream(folder, batch_size=4, workers=0, seed=0, log=log, count=5, samples_per_epoch=20)
    assert len(keys) == 5 and not any("nocap" in k or "bad" in k or "notes" in k for b in keys for k in b)
    assert len(log.lines) == 1 and "skipped" in log.lines[0] and log.lines[0].startswith("epoch 1:")
    with pytest.raises(DataError) as err:
        _stream(folder, batch_size=4, workers=2, seed=0, count=5, strict=True, samples_per_epoch=20)
    message = str(err.value)
    assert "\n" not in message and ("00002.tar" in message or "00003.tar" in message)
    with pytest.raises(DataError, match="not a readable tar shard"):
        open_shard_set(folder, "all")  # counting reads every header: a truncated tar is named


def test_resuming_inside_an_epoch_rereads_only_unfinished_shards_and_loses_no_sample(tmp_path):
    from medclip_cli.training.stream_batches import StreamBatches, StreamSource

    import torch

    all_keys = write_shard_set(tmp_path / "s", [6] * 6)
    cfg = TrainConfig(output=tmp_path / "run", data=tmp_path / "s", split="all", stream=True, batch_size=4, workers=2, shuffle_buffer=3, seed=9)
    source = StreamSource(open_shard_set(tmp_path / "s", "all"), _Model())
    before = StreamBatches(source, cfg, torch.device("cpu"), DistInfo(), [(0, 0, 9)])
    taken = []
    for k, _ in enumerate(before):
        taken += before.keys
        if k == 3:  # "killed" after 4 batches: the checkpoint holds this record
            record = before.progress(0, 4)  # the trainer at epoch 0 with 4 micro-batches applied
            break
    assert record["epoch"] == 0 and record["done"]
    for shard in record["done"]:  # a shard counts as done only once all its samples were trained on
        assert {k for k in all_keys if k.startswith(shard)} <= set(taken)
    after = StreamBatches(source, cfg, torch.device("cpu"), DistInfo(), [(0, 4, 5)], resumed=record)
    rest = [key for _ in after for key in after.keys]
    remaining = [n for n in epoch_shards(source.shards.names, 9, 0) if n not in record["done"]]
    assert len(rest) == 20 and {k.split("/")[0] for k in rest} == set(remaining)  # read again from their start
    again = set(taken) & set(rest)  # trained on twice this epoch: only samples of shards unfinished at the "kill"
    assert again and not {k.split("/")[0] for k in again} & set(record["done"])


def test_a_member_over_the_byte_limit_is_skipped_without_being_read(tmp_path, monkeypatch):
    from medclip_cli.data.shard_stream import decode_sample, read_shard

    write_shard_set(tmp_path / "s", [2])
    monkeypatch.setenv("MEDCLIP_MAX_IMAGE_BYTES", "100")  # smaller than any PNG written above
    samples = [item for item in read_shard(tmp_path / "s" / "00000.tar") if hasattr(item, "members")]
    assert len(samples) == 2 and all("png" not in s.members for s in samples)
    with pytest.raises(DataError, match=r"00000\.tar: member .s0_0\.png.: .* bytes, over --max-image-bytes; skipped"):
        decode_sample(samples[0], PreprocessConfig(image_size=12))
