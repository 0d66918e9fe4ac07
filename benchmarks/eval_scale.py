"""Evaluation's scoring as the split grows: peak memory and time of retrieval and of bootstrap
intervals, medclip against the way that holds the whole matrix, side by side, in one run.

* retrieval: medclip's ``retrieval_ranks`` (a block of queries at a time) against CLIP_benchmark's
  retrieval scoring (``zeroshot_retrieval``: the whole [texts, images] score matrix, a positive
  mask as large, then ``recall_at_k`` in batches) — both from the same normalised embeddings;
* bootstrap: medclip's ``task_replicates`` (1,000 resamples drawn and scored in blocks) against
  the same replicates from the whole ``[resamples, images]`` index matrix at once (what medclip
  did before), five classes.

Each measurement runs in a fresh process: peak RSS is that computation's growth (VmHWM after,
minus RSS before), time is its wall time.

    python benchmarks/eval_scale.py --sizes 2000 8000 16000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_name  # benchmarks/machine.py, beside this script

REPO = Path(__file__).resolve().parents[1]


def _rss(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return 0.0


def child(kind: str, n: int) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    if kind.startswith("retrieval"):
        g = torch.Generator().manual_seed(0)
        images = F.normalize(torch.randn(n, 512, generator=g), dim=-1)
        texts = F.normalize(images + 0.5 * torch.randn(n, 512, generator=g), dim=-1)
        before = _rss("VmRSS:")
        start = time.perf_counter()
        if kind == "retrieval-medclip":
            from medclip_cli.evaluation.retrieval import retrieval_metrics

            r1 = retrieval_metrics(images, texts, list(range(n)), ks=(1, 5, 10))["image_to_text_R@1"]
        else:
            from clip_benchmark.metrics.zeroshot_retrieval import batchify, recall_at_k

            scores = texts @ images.t()  # what zeroshot_retrieval.evaluate does
            positive_pairs = torch.zeros_like(scores, dtype=bool)
            positive_pairs[torch.arange(len(scores)), torch.arange(n)] = True
            recall = {}
            for k in (1, 5, 10):
                recall[f"image_retrieval_recall@{k}"] = (batchify(recall_at_k, scores, positive_pairs, 64, "cpu", k=k) > 0).float().mean().item()
                recall[f"text_retrieval_recall@{k}"] = (batchify(recall_at_k, scores.T, positive_pairs.T, 64, "cpu", k=k) > 0).float().mean().item()
            r1 = recall["text_retrieval_recall@1"]  # an image's caption first: medclip's image_to_text_R@1
    else:
        from medclip_cli.evaluation.uncertainty import classification_replicates, resample_indices, task_replicates

        y, scores = rng.integers(0, 5, n), rng.random((n, 5))
        before = _rss("VmRSS:")
        start = time.perf_counter()
        if kind == "bootstrap-medclip":
            reps = task_replicates("classification", {"y_true": y, "scores": scores}, 1000, 0)
        else:
            reps = classification_replicates(y, scores, resample_indices(n, 1000, 0))
        r1 = float(np.percentile(reps["accuracy@1"], 2.5))
    return {"s": time.perf_counter() - start, "peak_mib": _rss("VmHWM:") - before, "check": r1}


def _run(kind: str, n: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", kind, str(n)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{kind} at {n} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 16000])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    import torch

    print(f"CPU: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads; each figure a fresh process")
    head = f"{'task':>9} | {'images':>7} | {'medclip s':>9} | {'whole-matrix s':>14} | {'time ×':>6} | {'medclip MiB':>11} | {'whole-matrix MiB':>16} | {'memory ×':>8} | same"
    print(head)
    print("-" * len(head))
    for task in ("retrieval", "bootstrap"):
        for n in args.sizes:
            ours, theirs = _run(f"{task}-medclip", n), _run(f"{task}-whole", n)
            same = abs(ours["check"] - theirs["check"]) < 1e-9
            print(f"{task:>9} | {n:>7} | {ours['s']:>9.2f} | {theirs['s']:>14.2f} | {theirs['s'] / ours['s']:>5.2f}x | "
                  f"{ours['peak_mib']:>11.0f} | {theirs['peak_mib']:>16.0f} | {theirs['peak_mib'] / max(ours['peak_mib'], 1):>7.1f}x | {same}")  # fmt: skip
    print("whole-matrix side: retrieval = CLIP_benchmark's zeroshot_retrieval scoring; bootstrap = the whole index matrix at once;"
          " same = the two agree on R@1 (retrieval) or the interval's low end (bootstrap)")


if __name__ == "__main__":
    main()
