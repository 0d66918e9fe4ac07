"""Nearest-image search: brute-force NumPy against faiss, at 10k, 100k and 1M rows of 512-d
unit-length synthetic embeddings stored as float32 and float16.

For each size and dtype it prints, side by side: queries per second one query at a time (what
``medclip search`` does) and in a batch of 64, the memory the search holds beyond the matrix, the
time to build the faiss index, and whether the two gave the same neighbours. faiss here is an
exact flat inner-product index (IndexFlatIP for float32, a float16 scalar-quantised flat index
for float16), so its answers are the same and only speed and memory differ; an approximate
index (HNSW) is timed at the largest size for its build cost and recall@10.

    python benchmarks/search_backends.py --sizes 10000,100000,1000000 --dim 512
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from machine import cpu_name  # benchmarks/machine.py, beside this script

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _synthetic(n: int, dim: int, dtype, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=dtype)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


def _qps(fn, queries, batch: int, min_seconds: float = 1.0) -> float:
    done, start = 0, time.perf_counter()
    while True:
        for i in range(0, len(queries), batch):
            fn(queries[i : i + batch])
            done += len(queries[i : i + batch])
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--dtypes", default="float32,float16")
    parser.add_argument("--hnsw", action="store_true", help="also build an HNSW index at the largest size")
    args = parser.parse_args()
    import numpy as np

    from medclip_cli.evaluation.search import FaissIndex, brute_force, faiss_available

    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical cores); load average {os.getloadavg()}")
    print(f"numpy {np.__version__}; faiss {'installed' if faiss_available() else 'NOT installed'}")
    if faiss_available():
        import faiss

        print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
    queries = _synthetic(args.queries, args.dim, np.float32, seed=1)
    header = (
        f"{'rows':>9} {'dtype':>7} {'matrix MiB':>10} | {'numpy q/s (1)':>13} {'faiss q/s (1)':>13} {'ratio':>6} | "
        f"{'numpy q/s (64)':>14} {'faiss q/s (64)':>14} {'ratio':>6} | {'numpy +MiB':>10} {'faiss +MiB':>10} "
        f"{'build s':>7} same"
    )
    print(header)
    for n in [int(s) for s in args.sizes.split(",")]:
        for dtype in [np.dtype(d).type for d in args.dtypes.split(",")]:
            matrix = _synthetic(n, args.dim, dtype)
            size_mib = matrix.nbytes / 2**20
            base = _rss_mib()
            brute_force(matrix, queries[:1], args.k)
            numpy_extra = _rss_mib() - base
            np_1 = _qps(lambda q: brute_force(matrix, q, args.k), queries[:16], 1)
            np_64 = _qps(lambda q: brute_force(matrix, q, args.k), queries, 64)
            row = f"{n:>9} {np.dtype(dtype).name:>7} {size_mib:>10.0f} | {np_1:>13.1f} "
            if faiss_available():
                before = _rss_mib()
                start = time.perf_counter()
                index = FaissIndex(matrix)
                build = time.perf_counter() - start
                faiss_extra = _rss_mib() - before
                fs_1 = _qps(lambda q: index.search(q, args.k), queries[:16], 1)
                fs_64 = _qps(lambda q: index.search(q, args.k), queries, 64)
                a = brute_force(matrix, queries, args.k).indices
                b = index.search(queries, args.k).indices
                same = "yes" if (a == b).mean() > 0.999 else f"{(a == b).mean():.3f}"
                row += (
                    f"{fs_1:>13.1f} {fs_1 / np_1:>6.2f} | {np_64:>14.1f} {fs_64:>14.1f} {fs_64 / np_64:>6.2f} | "
                    f"{numpy_extra:>10.0f} {faiss_extra:>10.0f} {build:>7.2f} {same}"
                )
                del index
            else:
                row += f"{'—':>13} {'—':>6} | {np_64:>14.1f} {'—':>14} {'—':>6} | {numpy_extra:>10.0f}"
            print(row, flush=True)
            del matrix
    if args.hnsw and faiss_available():
        import faiss

        n = max(int(s) for s in args.sizes.split(","))
        matrix = _synthetic(n, args.dim, np.float32)
        start = time.perf_counter()
        index = faiss.IndexHNSWFlat(args.dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.add(matrix)
        build = time.perf_counter() - start
        qps = _qps(lambda q: index.search(q, args.k), queries[:16], 1)
        exact = brute_force(matrix, queries, args.k).indices
        _, approx = index.search(queries, args.k)
        recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(exact, approx)])
        print(f"HNSW (M=32) at {n} rows float32: build {build:.1f} s, {qps:.0f} q/s one at a time, recall@{args.k} {recall:.3f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
