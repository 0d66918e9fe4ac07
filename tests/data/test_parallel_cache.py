"""The decode cache filled by several processes: the same file, byte for byte, as one process."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from medclip_cli.data import Dataset, Sample
from medclip_cli.data import decode_pool
from medclip_cli.data.cache import pixels_dir
from medclip_cli.data.pixels import load_pixels
from medclip_cli.data.preprocess import PreprocessConfig
from medclip_cli.errors import DataError, UsageError

from .conftest import write_png


def _set(root: Path, n: int = 40) -> Dataset:
    """``n`` images of varied sizes, with a corrupt one early, a missing one, and one 16-bit."""
    paths = []
    for k in range(n):
        path = root / f"im{k:03d}.png"
        if k == 3:
            path.write_bytes(b"\x89PNG\r\n\x1a\n not really")
        elif k == 17:
            pass  # missing
        else:
            write_png(path, k, size=(20 + k % 7, 30 - k % 5), mode="I;16" if k == 11 else "RGB")
        paths.append(path)
    return Dataset("test", root, "all", [Sample(p.stem, p, f"caption {p.stem}") for p in paths], {})


def _build(home: Path, monkeypatch, dataset: Dataset, workers: int):
    monkeypatch.setenv("MEDCLIP_HOME", str(home))
    monkeypatch.setenv(decode_pool.ENV, str(workers))
    pixels = load_pixels(dataset, PreprocessConfig(image_size=16))
    (entry,) = sorted(pixels_dir().glob("*/*.npy"))
    return pixels, entry.read_bytes()


def test_two_workers_write_the_same_bytes_as_one(tmp_path, monkeypatch):
    monkeypatch.setattr(decode_pool, "MIN_PARALLEL", 0)
    dataset = _set(tmp_path / "data")
    one, one_bytes = _build(tmp_path / "home1", monkeypatch, dataset, 1)
    two, two_bytes = _build(tmp_path / "home2", monkeypatch, dataset, 2)
    assert one_bytes == two_bytes
    assert one.indices == two.indices and 3 not in one.indices and 17 not in one.indices
    assert [i for i, _ in one.skipped] == [i for i, _ in two.skipped] == ["im003", "im017"]
    plain = load_pixels(dataset, PreprocessConfig(image_size=16), cache=False)
    np.testing.assert_array_equal(two.array, plain.array)
    assert two.array[-1].any()  # the last decodable image landed in the last used row
    stored = np.load(sorted(pixels_dir().glob("*/*.npy"))[0])
    assert not stored[len(two.indices) :].any()  # rows freed by the skipped images are zero


def test_strict_stops_on_a_bad_image_in_a_worker(tmp_path, monkeypatch):
    monkeypatch.setattr(decode_pool, "MIN_PARALLEL", 0)
    monkeypatch.setenv(decode_pool.ENV, "2")
    with pytest.raises(DataError, match="im0(03|17)"):
        load_pixels(_set(tmp_path / "data"), PreprocessConfig(image_size=16), strict=True)
    assert not [p for p in pixels_dir().glob("*/*") if p.parent.name != "index"]  # no entry, no temporary file


@pytest.mark.parametrize("raw", ["0", "many"])
def test_bad_worker_count_is_a_usage_error(monkeypatch, raw):
    monkeypatch.setenv(decode_pool.ENV, raw)
    with pytest.raises(UsageError, match=decode_pool.ENV):
        decode_pool.decode_workers()


def test_code_read_from_stdin_decodes_in_its_own_process(tmp_path):
    """Workers re-import the main script; from stdin there is none, so one process decodes."""
    import os
    import subprocess
    import sys

    dataset = _set(tmp_path / "data", n=20)
    script = (
        "from pathlib import Path\n"
        "from medclip_cli.data import Dataset, Sample, decode_pool\n"
        "from medclip_cli.data.pixels import load_pixels\n"
        "from medclip_cli.data.preprocess import PreprocessConfig\n"
        "decode_pool.MIN_PARALLEL = 0\n"
        f"paths = [Path(p) for p in {[str(s.image) for s in dataset.samples]!r}]\n"
        "ds = Dataset('test', paths[0].parent, 'all', [Sample(p.stem, p, 'c') for p in paths], {})\n"
        "print(len(load_pixels(ds, PreprocessConfig(image_size=16))))\n"
    )
    env = {**os.environ, decode_pool.ENV: "2", "MEDCLIP_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "18"


def test_default_worker_count_shares_the_cores_between_torchrun_processes(monkeypatch):
    import os

    monkeypatch.delenv(decode_pool.ENV, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert decode_pool.decode_workers() == 16
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert decode_pool.decode_workers() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert decode_pool.decode_workers() == 1


def test_two_workers_hash_the_files_as_one_process(tmp_path, monkeypatch):
    from medclip_cli.data import cache

    dataset = _set(tmp_path / "data")
    fifo = tmp_path / "data" / "fifo.png"
    os.mkfifo(fifo)  # never read: a pipe is not a regular file
    dataset.samples.append(Sample("fifo", fifo, "a pipe"))
    monkeypatch.setattr(cache, "MIN_PARALLEL_HASH", 1)
    monkeypatch.setenv(decode_pool.ENV, "1")
    monkeypatch.setenv("MEDCLIP_HOME", str(tmp_path / "home1"))
    one = cache.content_hashes(dataset)
    monkeypatch.setenv(decode_pool.ENV, "2")
    monkeypatch.setenv("MEDCLIP_HOME", str(tmp_path / "home2"))
    advanced = []
    two = cache._hash_all([s.path for s in dataset.samples], advanced.append)
    expected = [cache.file_sha256(s.image) for s in dataset.samples]
    assert np.array_equal(two, one) and [bytes(row).hex() if row.any() else None for row in one] == expected
    assert expected[17] is None and expected[-1] is None and len(set(expected)) == len(expected) - 1  # gone, fifo
    assert sum(advanced) == len(dataset.samples) and len(advanced) > 1  # in chunks, from the workers
    monkeypatch.setenv("MEDCLIP_HOME", str(tmp_path / "home1"))
    monkeypatch.setattr(cache, "file_sha256", lambda path: pytest.fail(f"{path} hashed again"))
    assert np.array_equal(cache.content_hashes(dataset), one)  # stored as raw bytes, read back
    assert (tmp_path / "home1").rglob("*.hashes") and not list((tmp_path / "home1").rglob("index/*.json"))
