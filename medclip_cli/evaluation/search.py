"""Nearest images by cosine similarity: exact top-k over unit-length embeddings.

Brute force with NumPy reads the matrix in row blocks (float16 blocks are widened to float32 one
at a time, so a float16 matrix costs half the memory and no full copy). Where faiss is installed
the same exact search can run through a faiss flat index (identical neighbours).
``benchmarks/search_backends.py`` measured on this project's 2-core CPU (BENCHMARKS.md): for
float32 rows NumPy's BLAS product beat faiss's flat index at every size up to 1M rows (faiss at
0.4-0.7x), so float32 stays on NumPy; for float16 rows faiss's float16 flat index was 2x faster
at 10k rows and 10-15x at 100k, one query at a time, because NumPy must widen every block first.
So ``auto`` uses faiss for float16 matrices from ``FAISS_MIN_ROWS`` rows, where installed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np

from medclip_cli.errors import UsageError

#: float16 matrices from this many rows go to faiss under ``auto`` (benchmarks/search_backends.py).
FAISS_MIN_ROWS = 10_000
BLOCK_ROWS = 65_536
BACKENDS = ("auto", "numpy", "faiss")


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def choose_backend(n_rows: int, backend: str = "auto", dtype=np.float32) -> str:
    if backend not in BACKENDS:
        raise UsageError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "faiss" and not faiss_available():
        raise UsageError("--backend faiss: faiss is not installed", hint="pip install faiss-cpu, or use --backend numpy")
    if backend == "auto":
        pays = np.dtype(dtype) == np.float16 and n_rows >= FAISS_MIN_ROWS
        return "faiss" if pays and faiss_available() else "numpy"
    return backend


@dataclass
class Neighbours:
    """``indices[q, j]`` is the row of query q's (j+1)-th nearest image; ``scores`` its cosine."""

    indices: np.ndarray  # [Q, k] int64
    scores: np.ndarray  # [Q, k] float32
    backend: str


def nearest(matrix: np.ndarray, queries: np.ndarray, k: int, backend: str = "auto") -> Neighbours:
    """The ``k`` rows of ``matrix`` [N, D] with the highest inner product with each query [Q, D]."""
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    if matrix.ndim != 2 or queries.shape[1] != matrix.shape[1]:
        raise UsageError(f"query has {queries.shape[1]} dimensions, the embeddings {matrix.shape[-1]}")
    k = min(k, len(matrix))
    chosen = choose_backend(len(matrix), backend, matrix.dtype)
    if chosen == "faiss":
        return FaissIndex(matrix).search(queries, k)
    return brute_force(matrix, queries, k)


def brute_force(matrix: np.ndarray, queries: np.ndarray, k: int, block: int = BLOCK_ROWS) -> Neighbours:
    """Exact top-k by blocks of rows: memory beyond the matrix is one block of scores."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    q_t = np.ascontiguousarray(queries.T, dtype=np.float32)
    for start in range(0, len(matrix), block):
        chunk = matrix[start : start + block]
        scores = chunk.astype(np.float32, copy=False) @ q_t  # [rows, Q]
        take = min(k, len(chunk))
        part = np.argpartition(-scores, take - 1, axis=0)[:take].T  # [Q, take]
        cand_scores = np.concatenate([best_scores, np.take_along_axis(scores.T, part, axis=1)], axis=1)
        cand_rows = np.concatenate([best_rows, part + start], axis=1)
        keep = np.argsort(-cand_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(cand_scores, keep, axis=1)
        best_rows = np.take_along_axis(cand_rows, keep, axis=1)
    return Neighbours(best_rows, best_scores.astype(np.float32), "numpy")


class FaissIndex:
    """An exact inner-product faiss index: float32 rows as IndexFlatIP, float16 rows as a
    float16 scalar-quantised flat index (same neighbours, half the memory)."""

    def __init__(self, matrix: np.ndarray) -> None:
        import faiss

        dim = matrix.shape[1]
        if matrix.dtype == np.float16:
            self.index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
            for start in range(0, len(matrix), BLOCK_ROWS):
                self.index.add(np.ascontiguousarray(matrix[start : start + BLOCK_ROWS], dtype=np.float32))
        else:
            self.index = faiss.IndexFlatIP(dim)
            self.index.add(np.ascontiguousarray(matrix, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int) -> Neighbours:
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return Neighbours(rows.astype(np.int64), scores.astype(np.float32), "faiss")
