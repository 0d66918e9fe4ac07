"""The decode cache: each data set's images decoded and resized once, kept on disk as uint8.

Layout under ``MEDCLIP_HOME/cache/pixels/``::

    index/<listing>.json              sample files' (path, size, mtime) -> sha256 of their bytes
    <geometry>/<content>.npy          N x H x W x 3 uint8, rows in sample order (skipped ones left out)
    <geometry>/<content>.json         which samples the rows are, and why the others were skipped

``<content>`` hashes the bytes of every image (and the cache version); ``<geometry>`` is
:meth:`PreprocessConfig.geometry_key`. A changed file gets a new hash, so a new entry; changed
preprocessing reads another folder. Files are written under a temporary name and renamed, so a
reader never sees half an entry; the ``.json`` is written last and marks the entry complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from medclip_cli.data.dataset import Dataset
from medclip_cli.data.home import cache_dir
from medclip_cli.data.preprocess import PreprocessConfig
from medclip_cli.engine.progress import NullProgress, ProgressReporter

CACHE_VERSION = 1  # bump when decoding or resizing changes what a file turns into
_HASH_CHUNK = 1 << 20
_PATH_MARK = "{image}"  # stands for the sample's path in stored skip reasons
MISSING = "missing"


def pixels_dir() -> Path:
    return cache_dir() / "pixels"


def file_sha256(path: Path) -> str | None:
    """sha256 of a file's bytes, or None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def content_hashes(dataset: Dataset, progress: ProgressReporter | None = None) -> list[str]:
    """sha256 of each sample's image (``"missing"`` when unreadable), reusing earlier hashes.

    Hashes are remembered per listing of (path, size, mtime): an unchanged set is not re-read.
    """
    listing = hashlib.sha256()
    for s in dataset.samples:
        try:
            st = s.image.stat()
            listing.update(f"{s.image.absolute()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            listing.update(f"{s.image.absolute()}\0{MISSING}\n".encode())
    index = pixels_dir() / "index" / f"{listing.hexdigest()[:32]}.json"
    try:
        stored = json.loads(index.read_text())
        if isinstance(stored, list) and len(stored) == len(dataset.samples):
            return stored
    except (OSError, ValueError):
        pass
    progress = progress or NullProgress()
    task = progress.task(f"hashing {dataset.split} images", total=len(dataset.samples))
    hashes = []
    for s in dataset.samples:
        hashes.append(file_sha256(s.image) or MISSING)
        progress.advance(task)
    progress.done(task)
    _write_atomic(index, lambda fh: fh.write(json.dumps(hashes).encode()))
    return hashes


@dataclass(frozen=True)
class CacheEntry:
    """Where one data set's decoded pixels for one geometry live."""

    array_path: Path
    meta_path: Path

    @classmethod
    def for_dataset(cls, hashes: list[str], preprocess: PreprocessConfig) -> "CacheEntry":
        digest = hashlib.sha256(f"v{CACHE_VERSION}\n".encode())
        for h in hashes:
            digest.update(f"{h}\n".encode())
        folder = pixels_dir() / preprocess.geometry_key()
        key = digest.hexdigest()[:32]
        return cls(folder / f"{key}.npy", folder / f"{key}.json")

    def read(self, dataset: Dataset) -> tuple[np.ndarray, list[int], list[tuple[str, str]]] | None:
        """The stored pixels, row indices and skips, or None when the entry is absent or unusable."""
        try:
            meta = json.loads(self.meta_path.read_text())
            array = np.load(self.array_path, mmap_mode="c")  # copy-on-write: writable, never written back
        except (OSError, ValueError):
            return None
        indices = meta.get("indices")
        if not isinstance(indices, list) or array.shape[0] < len(indices) or meta.get("samples") != len(dataset):
            return None
        skipped = [
            (dataset.samples[i].id, reason.replace(_PATH_MARK, str(dataset.samples[i].image)))
            for i, reason in meta.get("skipped", [])
        ]
        return array[: len(indices)], indices, skipped

    def write(
        self,
        dataset: Dataset,
        size: int,
        decode: Callable[[np.ndarray], tuple[list[int], list[tuple[int, str]]]],
    ) -> None:
        """Create the entry: ``decode(out)`` fills ``out`` row by row and returns (indices, skips)."""
        self.array_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.array_path.parent, prefix=".", suffix=".npy.tmp")
        os.close(fd)
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(dataset), size, size, 3))
            indices, skipped = decode(out)
            out.flush()
            del out
            os.replace(tmp, self.array_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        meta = {
            "version": CACHE_VERSION,
            "samples": len(dataset),
            "indices": indices,
            "skipped": [[i, reason.replace(str(dataset.samples[i].image), _PATH_MARK)] for i, reason in skipped],
        }
        _write_atomic(self.meta_path, lambda fh: fh.write(json.dumps(meta).encode()))


def _write_atomic(path: Path, write: Callable) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
