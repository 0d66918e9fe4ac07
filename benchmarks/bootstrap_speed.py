"""Bootstrap intervals: the vectorised resampling in ``evaluation/uncertainty.py`` against a plain
loop calling scikit-learn on each resample, same indices, same numbers, side by side.

    python benchmarks/bootstrap_speed.py --images 300 --classes 10 --resamples 1000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from machine import cpu_name  # benchmarks/machine.py, beside this script

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    from medclip_cli.evaluation.uncertainty import classification_replicates, resample_indices

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    y = rng.integers(0, args.classes, args.images)
    logits = rng.normal(size=(args.images, args.classes))
    logits[np.arange(args.images), y] += 1.5
    scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    indices = resample_indices(args.images, args.resamples, seed=0)

    start = time.perf_counter()
    fast = classification_replicates(y, scores, indices)
    vectorised = time.perf_counter() - start

    loops = {}
    start = time.perf_counter()
    acc = [accuracy_score(y[i], scores[i].argmax(1)) for i in indices]
    loops["accuracy@1"] = (time.perf_counter() - start, acc)
    start = time.perf_counter()
    f1 = [f1_score(y[i], scores[i].argmax(1), labels=sorted(set(y[i].tolist())), average="macro", zero_division=0) for i in indices]
    loops["macro_f1"] = (time.perf_counter() - start, f1)
    start = time.perf_counter()
    auc = [np.mean([roc_auc_score(y[i] == c, scores[i, c]) for c in range(args.classes) if 0 < np.sum(y[i] == c) < len(i)]) for i in indices]
    loops["macro_auroc"] = (time.perf_counter() - start, auc)

    print(f"CPU: {cpu_name()}; {args.images} images, {args.classes} classes, {args.resamples} resamples")
    print(f"vectorised, all {len(fast)} classification metrics together: {vectorised:.3f} s")
    for name, (seconds, values) in loops.items():
        same = np.allclose(fast[name], values, atol=1e-12)
        print(f"scikit-learn loop, {name:<11}: {seconds:7.3f} s  ({seconds / vectorised:6.1f}x the vectorised time for all metrics; same values: {same})")


if __name__ == "__main__":
    main()
