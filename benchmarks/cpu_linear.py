"""Linear layers on the CPU: PyTorch's default (MKL sgemm) next to oneDNN (``cpu_linear``).

Two measurements in one process, float32:
1. the three matrix products of one ViT-B/32 MLP layer at batch 32 (forward, input gradient,
   weight gradient), each side timed alternately, median GFLOP/s;
2. the engine's whole training step (ViT-B/32, batch 32, real MedPix captions, in-memory batches)
   with and without ``cpu_linear``, the two sides alternating step by step on the same batches.

    python benchmarks/cpu_linear.py --data ../shared/medpix2 --steps 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_ceiling import captions_for, cycle, make_step_run, memory_batches  # noqa: E402


def _median_seconds(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def products(repeat: int) -> list[tuple[str, float, float]]:
    import torch

    torch.manual_seed(0)
    n, d_in, d_out = 32 * 49, 768, 3072  # ViT-B/32 at 224 px: 49 patch tokens + the class token
    x, w, g = torch.randn(n, d_in), torch.randn(d_out, d_in), torch.randn(n, d_out)
    onednn = torch.ops.mkldnn._linear_pointwise
    pairs = {
        "forward x·Wᵀ": (lambda: torch.nn.functional.linear(x, w), lambda: onednn(x, w, None, "none", [], "")),
        "input gradient g·W": (lambda: g @ w, lambda: onednn(g, w.t(), None, "none", [], "")),
        "weight gradient gᵀ·x": (lambda: g.t() @ x, lambda: onednn(g.t(), x.t(), None, "none", [], "")),
    }
    flops = 2 * n * d_in * d_out
    rows = []
    for name, (mkl, dnn) in pairs.items():
        a, b = [], []
        for _ in range(repeat):  # alternate, so load changes slow both sides alike
            a.append(_median_seconds(mkl, 3))
            b.append(_median_seconds(dnn, 3))
        rows.append((name, flops / statistics.median(a) / 1e9, flops / statistics.median(b) / 1e9))
    return rows


def steps(data: Path, count: int) -> tuple[list[float], list[float]]:
    import torch

    torch.manual_seed(0)
    run = make_step_run("vit-b-32", batch_size=32, device="cpu", precision="fp32")
    batches = memory_batches(run, captions_for(data, "train", 128))
    sides = {"default": (nullcontext, cycle(batches)), "onednn": (run.linear_kernels, cycle(batches))}
    times: dict[str, list[float]] = {"default": [], "onednn": []}
    for k in range(count + 1):
        for name, (kernels, it) in sides.items():
            run.linear_kernels = kernels
            start = time.perf_counter()
            run.train_step(it)
            if k:  # the first step of each side is warm-up
                times[name].append(time.perf_counter() - start)
    return times["default"], times["onednn"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "medpix2")
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per side")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    import os

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"\n{'matrix product (1568x768x3072)':30} {'MKL GFLOP/s':>12} {'oneDNN':>8} {'ratio':>7}")
    for name, mkl, dnn in products(args.repeat):
        print(f"{name:30} {mkl:>12.1f} {dnn:>8.1f} {dnn / mkl:>6.2f}x", flush=True)
    default, onednn = steps(args.data, args.steps)
    ratio = statistics.median(a / b for a, b in zip(default, onednn))
    print(f"\n{'engine step, ViT-B/32, batch 32':30} {'default s':>12} {'oneDNN s':>8} {'ratio':>7}")
    print(f"{'median of ' + str(args.steps) + ' alternating steps':30} {statistics.median(default):>12.2f} "
          f"{statistics.median(onednn):>8.2f} {ratio:>6.2f}x (pairwise)")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
