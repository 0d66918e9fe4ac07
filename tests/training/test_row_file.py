"""Batches read the decode and token caches with pread (data/row_file.py), not through the map.

The bytes must be exactly those of the map; only arrays whose file is known for certain are read
this way, and a damaged cache file fails with a message instead of handing out other rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from medclip_cli.data.row_file import RowFile
from medclip_cli.training.batches import Batches, PairSet, _gather
from medclip_cli.training.config import TrainConfig


def _npy(tmp_path, name: str, shape: tuple, dtype=np.uint8) -> np.ndarray:
    data = (np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape) * 7919 % 251).astype(dtype)
    np.save(tmp_path / name, data)
    return data


def test_rows_read_from_the_file_are_the_rows_of_the_map(tmp_path):
    data = _npy(tmp_path, "pixels.npy", (50, 5, 4, 3))
    mapped = np.load(tmp_path / "pixels.npy", mmap_mode="c")
    rows = np.array([39, 0, 7, 7, 31])
    for view in (mapped, mapped[:40]):  # the cache hands out a leading part of the file's rows
        file = RowFile.of(view)
        assert file is not None
        assert np.array_equal(file.take(rows), data[rows])
        out = np.empty((len(rows), 5, 4, 3), dtype=np.uint8)
        assert file.take(rows, out) is out and np.array_equal(out, data[rows])
        assert np.array_equal(file.read(3, 11), data[3:11]) and np.array_equal(file.read(35, 99), view[35:99])
        assert file.read(40, 40).shape == (0, 5, 4, 3)
    tokens = _npy(tmp_path, "tokens.npy", (30, 77), np.int32)
    file = RowFile.of(np.load(tmp_path / "tokens.npy", mmap_mode="c"))
    assert np.array_equal(file.take(np.array([29, 3])), tokens[[29, 3]])


def test_only_an_array_whose_file_is_known_is_read_from_it(tmp_path):
    data = _npy(tmp_path, "pixels.npy", (20, 4, 4, 3))
    mapped = np.load(tmp_path / "pixels.npy", mmap_mode="c")
    assert RowFile.of(data) is None  # in memory
    assert RowFile.of(mapped[5:]) is None  # does not start at the file's first row
    assert RowFile.of(mapped[:, :2]) is None  # not C-ordered rows of the file
    assert RowFile.of(mapped[::2]) is None
    assert RowFile.of(torch.from_numpy(mapped).numpy()) is None  # the map is no longer known


def test_a_damaged_cache_file_fails_instead_of_handing_out_other_rows(tmp_path):
    _npy(tmp_path, "pixels.npy", (20, 4, 4, 3))
    file = RowFile.of(np.load(tmp_path / "pixels.npy", mmap_mode="c"))
    with pytest.raises(IndexError, match="out of range"):
        file.take(np.array([20]))
    with open(tmp_path / "pixels.npy", "r+b") as fh:  # cut short after the map was opened
        fh.truncate(file.offset + 10 * file.row_bytes)
    assert file.take(np.array([9])).shape == (1, 4, 4, 3)
    with pytest.raises(OSError, match="short read of row 15"):
        file.take(np.array([15]))
    with pytest.raises(OSError, match=r"short read of rows 8\.\.11"):
        file.read(8, 12)


class _OneProcess:
    rank, world_size = 0, 1


def test_batches_from_the_files_equal_batches_from_the_maps(tmp_path):
    _npy(tmp_path, "pixels.npy", (40, 8, 8, 3))
    _npy(tmp_path, "tokens.npy", (40, 12), np.int32)
    pixels = np.load(tmp_path / "pixels.npy", mmap_mode="c")
    tokens = np.load(tmp_path / "tokens.npy", mmap_mode="c")
    rows = np.arange(40, dtype=np.int64)[::-1].copy()  # pair k's image is row 39 - k
    pairs = PairSet(pixels, torch.from_numpy(tokens), [f"c{k}" for k in range(40)], [{} for _ in range(40)],
                    torch.arange(40) % 7, 0, rows=rows, pixel_file=RowFile.of(pixels), token_file=RowFile.of(tokens))  # fmt: skip
    mapped = dataclasses.replace(pairs, pixel_file=None, token_file=None)
    cfg = TrainConfig(output=tmp_path, data=tmp_path, batch_size=16, soft_targets=True, workers=2)
    segments = [(0, 0, 2), (1, 0, 2)]
    read = list(Batches(pairs, cfg, torch.device("cpu"), _OneProcess(), segments))
    through_map = list(Batches(mapped, cfg, torch.device("cpu"), _OneProcess(), segments))
    assert len(read) == len(through_map) == 4
    for (p0, t0, g0, _), (p1, t1, g1, _) in zip(read, through_map):
        assert torch.equal(p0, p1) and torch.equal(t0, t1) and torch.equal(g0, g1)
        assert t0.dtype == torch.int64
    idx = np.array([3, 3, 0])
    assert torch.equal(_gather(pixels, idx, False, pairs.pixel_file), torch.from_numpy(np.asarray(pixels)[idx]))


def test_training_pairs_read_their_rows_from_the_cache_files(tmp_path):
    from medclip_cli.data import Dataset, Sample
    from medclip_cli.models import resolve_model
    from medclip_cli.progress import NullProgress
    from medclip_cli.training.batches import load_pairs
    from tests.data.conftest import write_png

    model = resolve_model(encoder="test-vit", pretrained="none")
    captions = [None if k == 5 else f"axial CT {k}" for k in range(24)]  # one uncaptioned: rows index the map
    samples = [Sample(f"s{k}", write_png(tmp_path / f"s{k}.png", k), c) for k, c in enumerate(captions)]
    dataset = Dataset("test", tmp_path, "train", samples, {})

    def pairs_of(**kwargs):
        return load_pairs(dataset, model, strict=False, progress=NullProgress(), soft_label=None, soft=False, **kwargs)

    pairs = pairs_of()
    assert pairs.pixel_file is not None and pairs.token_file is not None and pairs.rows is not None
    cfg = TrainConfig(output=tmp_path, data=tmp_path, batch_size=8, workers=1)
    segments = [(0, 0, 2), (1, 0, 2)]
    read = list(Batches(pairs, cfg, torch.device("cpu"), _OneProcess(), segments))
    mapped = dataclasses.replace(pairs, pixel_file=None, token_file=None)
    for (p0, t0, _, _), (p1, t1, _, _) in zip(read, Batches(mapped, cfg, torch.device("cpu"), _OneProcess(), segments)):
        assert torch.equal(p0, p1) and torch.equal(t0, t1)
    in_memory = pairs_of(cache=False)  # --no-cache: nothing on disk, gathered from memory as before
    assert in_memory.pixel_file is None and in_memory.token_file is None
    for (p0, t0, _, _), (p1, t1, _, _) in zip(read, Batches(in_memory, cfg, torch.device("cpu"), _OneProcess(), segments)):
        assert torch.equal(p0, p1) and torch.equal(t0, t1)
