"""Rows of a memory-mapped ``.npy`` read with ``pread`` instead of through the map.

Training gathers its batches from the decode and token caches in a random order. Read through
the memory map, every row a step touches stays mapped into the process, and the kernel's
read-around maps its neighbours too (up to 32 pages for a 3 KB row), so over an epoch the
process's resident memory grows by the whole cache file. Read with ``os.preadv`` into the
batch, the same bytes come through the page cache (shared, evicted under pressure, readahead
for sequential requests) and the process's resident memory does not grow with the data set.
"""

from __future__ import annotations

import os
import weakref

import numpy as np


class RowFile:
    """The rows of an array stored C-ordered in a file from byte ``offset`` on."""

    def __init__(self, path: str, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.offset, self.shape, self.dtype = path, offset, tuple(shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        weakref.finalize(self, os.close, self._fd)

    @classmethod
    def of(cls, array: np.ndarray) -> "RowFile | None":
        """The file behind ``array`` when it is a C-ordered leading part of a :class:`numpy.memmap`
        (``np.load(..., mmap_mode=...)`` and slices ``[:n]`` of it); None otherwise."""
        if os.name != "posix" or not array.flags.c_contiguous or array.ndim < 1:
            return None
        start = array.__array_interface__["data"][0]
        root = array
        while isinstance(root.base, np.ndarray):
            root = root.base
            if root.__array_interface__["data"][0] != start or not root.flags.c_contiguous:
                return None
        filename, offset = getattr(root, "filename", None), getattr(root, "offset", None)
        if not isinstance(root, np.memmap) or filename is None or offset is None or root.dtype != array.dtype:
            return None
        if root.shape[1:] != array.shape[1:]:
            return None
        try:
            return cls(str(filename), int(offset), array.shape, array.dtype)
        except OSError:
            return None

    def read(self, start: int, stop: int) -> np.ndarray:
        """``array[start:stop]`` read from the file with one call (the rows are contiguous)."""
        start, stop = max(0, start), min(stop, self.shape[0])
        out = np.empty((max(0, stop - start), *self.shape[1:]), dtype=self.dtype)
        size = out.nbytes
        got = os.preadv(self._fd, [memoryview(out.reshape(-1).view(np.uint8))], self.offset + start * self.row_bytes) if size else 0
        if got != size:
            raise OSError(f"{self.path}: short read of rows {start}..{stop - 1} ({got} of {size} bytes)")
        return out

    def take(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``array[rows]`` read from the file (into ``out``, C-ordered, when given)."""
        rows = np.asarray(rows)
        if rows.size and (rows.min() < 0 or rows.max() >= self.shape[0]):
            raise IndexError(f"row out of range 0..{self.shape[0] - 1} in {self.path}")
        if out is None:
            out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        if not out.flags.c_contiguous or out.shape != (len(rows), *self.shape[1:]) or out.dtype != self.dtype:
            raise ValueError(f"out must be a C-ordered {self.dtype} array of shape {(len(rows), *self.shape[1:])}")
        flat, size = memoryview(out.reshape(-1).view(np.uint8)), self.row_bytes
        for k, row in enumerate(rows.tolist()):
            got = os.preadv(self._fd, [flat[k * size : (k + 1) * size]], self.offset + row * size)
            if got != size:
                raise OSError(f"{self.path}: short read of row {row} ({got} of {size} bytes)")
        return out
