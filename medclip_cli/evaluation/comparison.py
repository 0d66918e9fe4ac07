"""Intervals for every model's metrics, and paired comparisons of models on the same images.

Every model's task is resampled with the same index matrix (it depends only on the seed, the
number of resamples and the number of images), so the per-model replicates kept here are already
paired: the difference of two models' replicates is the paired bootstrap of their difference.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from medclip_cli.evaluation.uncertainty import intervals, mcnemar_exact, paired_intervals, task_replicates

#: The paired right/wrong outcome McNemar's test is run on, per task kind.
MCNEMAR_METRIC = {"classification": "accuracy@1", "retrieval": "image_to_text_R@1"}


def add_intervals(models: Sequence, resamples: int, seed: int, ks: Sequence[int]) -> None:
    """Set ``task.intervals`` for every task of every model (``evaluate.ModelResult``)."""
    for model in models:
        for task in model.tasks.values():
            replicates = task_replicates(task.kind, task.arrays, resamples, seed, ks)
            task.arrays["replicates"] = replicates
            task.intervals = intervals(task.metrics, replicates)


def paired_comparisons(models: Sequence, resamples: int, seed: int, ks: Sequence[int]) -> list[dict]:
    """Each model after the first against the first, task by task: a paired bootstrap interval
    for every metric's difference (model − reference) and the exact McNemar test."""
    if len(models) < 2:
        return []
    reference, out = models[0], []
    for model in models[1:]:
        for name, task in model.tasks.items():
            ref = reference.tasks.get(name)
            if ref is not None:
                out.append(compare_tasks(ref, task, reference.label, model.label, resamples, seed, ks))
    return out


def compare_tasks(ref, task, ref_label: str, label: str, resamples: int, seed: int, ks: Sequence[int]) -> dict:
    """One paired comparison (see :func:`paired_comparisons`) as a JSON-ready dict."""
    row = {"task": task.task, "reference": ref_label, "model": label}
    same = ref.arrays.get("ids") == task.arrays.get("ids") and ref.arrays.get("captions") == task.arrays.get("captions")
    if not same:
        # Different images (one model could not read some): an unpaired difference would mislead.
        row["same_images"] = False
        return row
    row["same_images"] = True
    ref_reps = ref.arrays.get("replicates") or task_replicates(ref.kind, ref.arrays, resamples, seed, ks)
    reps = task.arrays.get("replicates") or task_replicates(task.kind, task.arrays, resamples, seed, ks)
    row["differences"] = {k: iv.to_json() for k, iv in paired_intervals(ref.metrics, task.metrics, ref_reps, reps).items()}
    metric = MCNEMAR_METRIC[task.kind]
    row["mcnemar"] = {"metric": metric, **mcnemar_exact(_hits(ref), _hits(task)).to_json()}
    return row


def _hits(task) -> np.ndarray:
    """Per image: right (top-1 class, or own caption ranked first) or wrong."""
    if task.kind == "retrieval":
        return np.asarray(task.arrays["rank_i2t"]) == 0
    return np.asarray(task.arrays["scores"]).argmax(axis=1) == np.asarray(task.arrays["y_true"])


def significance_words(row: dict) -> str:
    """The McNemar verdict of one comparison row in words."""
    test = row.get("mcnemar")
    if not test:
        return "not compared (the models were scored on different images)"
    verdict = "significant at 0.05" if test["significant_at_0.05"] else "not significant at 0.05"
    return (
        f"{test['metric']}: exact McNemar p = {test['p_value']:.3g} "
        f"({test['only_a_correct']} images right only for {row['reference']}, {test['only_b_correct']} only for {row['model']}): {verdict}"
    )
