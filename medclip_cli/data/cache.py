"""The decode cache: each data set's images decoded and resized once, kept on disk as uint8.

Layout under ``MEDCLIP_HOME/cache/pixels/``::

    index/<listing>.hashes            sample files' (path, file_identity) -> sha256 of their bytes
                                      (32 bytes per sample, raw; zeros: unreadable)
    <geometry>/<content>.npy          N x H x W x 3 uint8, rows in sample order (skipped ones left out)
    <geometry>/<content>.hashes       the sha256 of each row's file (32 bytes per row), to reuse rows
    <geometry>/<content>.json         which samples were skipped, and why (the others are the rows)

``<content>`` hashes the bytes of every image (and the cache version); ``<geometry>`` is
:meth:`PreprocessConfig.geometry_key`. A changed file gets a new hash, so a new entry; changed
preprocessing reads another folder. Files are written under a temporary name and renamed, so a
reader never sees half an entry; the ``.json`` is written last and marks the entry complete.
Hashes are kept as raw bytes, not JSON text: for a million images that is 32 MB read with one
call, against ~300 MB of Python strings parsed from ~70 MB of JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from medclip_cli.atomic import atomic_open
from medclip_cli.data.dataset import Dataset, file_identity
from medclip_cli.data.home import cache_dir
from medclip_cli.data.preprocess import PreprocessConfig
from medclip_cli.files import file_sha256
from medclip_cli.progress import NullProgress, ProgressReporter

CACHE_VERSION = 3  # bump when decoding or resizing changes what a file turns into (3: raw hashes)
_PATH_MARK = "{image}"  # stands for the sample's path in stored skip reasons
DIGEST = 32  # bytes of a sha256


def pixels_dir() -> Path:
    return cache_dir() / "pixels"


def content_hashes(dataset: Dataset, progress: ProgressReporter | None = None) -> np.ndarray:
    """sha256 of each sample's image, ``[N, 32]`` uint8 (zeros when unreadable), reusing earlier hashes.

    Hashes are remembered per listing of (path, size, mtime, inode, ctime): an unchanged set is not re-read.
    """
    listing = hashlib.sha256()
    for s in dataset.samples:
        path = s.path
        try:
            listing.update(f"{_absolute(path)}\0{file_identity(os.stat(path))}\n".encode())
        except OSError:
            listing.update(f"{_absolute(path)}\0missing\n".encode())
    index = pixels_dir() / "index" / f"{listing.hexdigest()[:32]}.hashes"
    stored = _read_hashes(index, len(dataset.samples))
    if stored is not None:
        return stored
    progress = progress or NullProgress()
    task = progress.task(f"hashing {dataset.split} images", total=len(dataset.samples))
    hashes = _hash_all([s.path for s in dataset.samples], lambda n: progress.advance(task, n))
    progress.done(task)
    _write_atomic(index, lambda fh: fh.write(hashes.tobytes()))
    return hashes


def _read_hashes(path: Path, rows: int) -> np.ndarray | None:
    """The ``[rows, 32]`` hashes stored at ``path``, or None when absent or of another length."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except (OSError, ValueError):
        return None
    return data.reshape(rows, DIGEST) if data.size == rows * DIGEST else None


def _absolute(path: str) -> str:
    """``str(Path(path).absolute())``, without building a Path for the usual already-normal
    absolute path (one per sample of a split that may have millions)."""
    if path.startswith("/") and not path.startswith("//") and not path.endswith(("/", "/.")):
        if "//" not in path and "/./" not in path:
            return path
    return str(Path(path).absolute())


#: Fewer files than this are hashed in the calling process (a pool's start hashes ~5,000 here).
MIN_PARALLEL_HASH = 4096


def _hash_all(paths: list[str], advance: Callable[[int], None]) -> np.ndarray:
    """:func:`file_sha256` of each path as ``[N, 32]`` bytes (zeros when unreadable), in the
    decode processes when there are enough files (:mod:`medclip_cli.data.decode_pool`)."""
    from medclip_cli.data.decode_pool import can_start_workers, decode_workers, hash_in_workers

    workers = min(decode_workers(), len(paths) // MIN_PARALLEL_HASH)
    if workers > 1 and can_start_workers():
        digests = hash_in_workers(paths, workers, advance=advance)
    else:
        digests = []
        for path in paths:
            digests.append(file_sha256(path))
            advance(1)
    out = np.zeros((len(paths), DIGEST), dtype=np.uint8)
    for k, digest in enumerate(digests):
        if digest is not None:
            out[k] = np.frombuffer(bytes.fromhex(digest), dtype=np.uint8)
    return out


Reuse = Callable[[int], "np.ndarray | None"]  # sample index -> its already decoded row, or None


@dataclass(frozen=True)
class CacheEntry:
    """Where one data set's decoded pixels for one geometry live."""

    array_path: Path
    meta_path: Path
    hashes: np.ndarray | None = field(default=None, compare=False)  # [N, 32], as from :func:`content_hashes`

    @classmethod
    def for_dataset(cls, hashes: np.ndarray, preprocess: PreprocessConfig) -> "CacheEntry":
        digest = hashlib.sha256(f"v{CACHE_VERSION}\n{len(hashes)}\n".encode())
        digest.update(np.ascontiguousarray(hashes, dtype=np.uint8).tobytes())
        folder = pixels_dir() / preprocess.geometry_key()
        key = digest.hexdigest()[:32]
        return cls(folder / f"{key}.npy", folder / f"{key}.json", hashes)

    def read(self, dataset: Dataset) -> tuple[np.ndarray, "list[int] | range", list[tuple[str, str]]] | None:
        """The stored pixels, row indices and skips, or None when the entry is absent or unusable."""
        try:
            meta = json.loads(self.meta_path.read_text())
            array = np.load(self.array_path, mmap_mode="c")  # copy-on-write: writable, never written back
        except (OSError, ValueError):
            return None
        n = len(dataset)
        stored = meta.get("skipped") if isinstance(meta, dict) else None
        if (
            meta.get("version") != CACHE_VERSION
            or meta.get("samples") != n
            or not isinstance(stored, list)
            or not all(isinstance(item, list) and len(item) == 2 and isinstance(item[0], int) and 0 <= item[0] < n for item in stored)
        ):
            return None
        left_out = {i for i, _ in stored}
        # The rows are the samples not skipped, in order: every sample, as a range, when none was.
        indices: "list[int] | range" = [i for i in range(n) if i not in left_out] if left_out else range(n)
        if array.shape[0] < len(indices) or meta.get("rows") != len(indices):
            return None
        skipped = [(dataset.samples[i].id, str(reason).replace(_PATH_MARK, dataset.samples[i].path)) for i, reason in stored]
        return array[: len(indices)], indices, skipped

    def write(
        self,
        dataset: Dataset,
        size: int,
        decode: Callable[[np.ndarray, Reuse], tuple[list[int], list[tuple[int, str]]]],
    ) -> None:
        """Create the entry: ``decode(out, reuse)`` fills ``out`` row by row, returns (indices, skips).

        ``reuse`` offers the rows of unchanged files from the entry this one replaces (the same
        data set before a file changed), which is deleted once this one is complete.
        """
        self.array_path.parent.mkdir(parents=True, exist_ok=True)
        source = _source(dataset)
        previous = self._previous(source)
        fd, tmp = tempfile.mkstemp(dir=self.array_path.parent, prefix=".", suffix=".npy.tmp")
        os.close(fd)
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(dataset), size, size, 3))
            indices, skipped = decode(out, _reuse_rows(previous, self.hashes))
            out.flush()
            del out
            os.replace(tmp, self.array_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if self.hashes is not None and len(self.hashes) == len(dataset):
            rows = np.asarray(self.hashes)[np.asarray(indices, dtype=np.int64)]
            _write_atomic(self.meta_path.with_suffix(".hashes"), lambda fh: fh.write(rows.tobytes()))
        meta = {
            "version": CACHE_VERSION,
            "source": source,
            "samples": len(dataset),
            "rows": len(indices),
            "skipped": [[i, reason.replace(dataset.samples[i].path, _PATH_MARK)] for i, reason in skipped],
        }
        _write_atomic(self.meta_path, lambda fh: fh.write(json.dumps(meta).encode()))
        for meta_path, _ in previous:
            _remove_entry(meta_path)

    def _previous(self, source: str) -> list[tuple[Path, dict]]:
        found = []
        for meta_path in self.meta_path.parent.glob("*.json"):
            if meta_path == self.meta_path:
                continue
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(meta, dict) and meta.get("source") == source:
                found.append((meta_path, meta))  # also an older version's: replaced, not left behind
        return found


def _source(dataset: Dataset) -> str:
    # Which data set an entry belongs to, so a rebuilt entry can replace the one before it.
    return f"{dataset.format}|{Path(dataset.root).absolute()}|{dataset.split}"


def _reuse_rows(previous: list[tuple[Path, dict]], hashes: np.ndarray | None) -> Reuse:
    rows: dict[bytes, tuple[np.ndarray, int]] = {}
    for meta_path, meta in previous:
        if meta.get("version") != CACHE_VERSION:
            continue
        try:
            array = np.load(meta_path.with_suffix(".npy"), mmap_mode="r")
        except (OSError, ValueError):
            continue
        stored = _read_hashes(meta_path.with_suffix(".hashes"), min(array.shape[0], meta.get("rows", -1)))
        if stored is None:
            continue
        for row, digest in enumerate(stored):
            if digest.any():
                rows.setdefault(digest.tobytes(), (array, row))

    def reuse(index: int) -> np.ndarray | None:
        if hashes is None or index >= len(hashes) or not hashes[index].any():
            return None
        found = rows.get(hashes[index].tobytes())
        return None if found is None else found[0][found[1]]

    return reuse


def _remove_entry(meta_path: Path) -> None:
    # Metadata first: a reader that finds no .json treats the entry as absent.
    for path in (meta_path, meta_path.with_suffix(".npy"), meta_path.with_suffix(".hashes")):
        try:
            path.unlink(missing_ok=True)
        except OSError:  # e.g. still memory-mapped on Windows: it is orphaned, not wrong
            pass


def _write_atomic(path: Path, write: Callable) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as fh:
        write(fh)
