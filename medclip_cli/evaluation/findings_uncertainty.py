"""Bootstrap intervals for multi-label findings: per finding and macro AUROC, AUPRC, F1,
sensitivity and specificity, through the machinery of ``uncertainty.py``.

The unit resampled is the image (a row of the label matrix, every finding at once), with the same
seeded index matrix ``uncertainty.resample_indices`` gives single-label tasks, so a finding's and the
macro replicates come from the same resamples and two models scored on the same images are paired.
Each metric is computed from the resample's draw counts as sample weights, which equals scikit-learn
on the resampled (duplicated) rows; thresholds stay those of the point estimate (chosen on the
validation split, never refitted per resample).

Rules for resamples where a metric does not exist (the same rules as the point estimate in
``multilabel.multilabel_metrics``): a finding whose labelled images in a resample are all one class
has no AUROC in it; no positive: no AUPRC, F1 or sensitivity; no negative: no specificity. Such a
resample is skipped for that finding and metric, and ``undefined_resamples`` counts the skipped ones
(so ``resamples - undefined_resamples`` were used). A macro replicate is the mean over the findings
that enter the point's macro; a resample in which any of them is undefined is skipped for the macro
(so the macro of every resample averages the same findings).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from medclip_cli.evaluation.uncertainty import (
    Interval,
    binary_auroc_replicates,
    concat_replicates,
    intervals,
    paired_intervals,
    resample_blocks,
    weighted_counts,
)

METRICS = ("auroc", "auprc", "f1", "sensitivity", "specificity")
_SEP = ":"  # flat metric names: "auroc:Cardiomegaly", and "macro_auroc"


def flat_metrics(metrics: dict) -> dict[str, float | None]:
    """``multilabel_metrics`` output as one flat dict: ``macro_<m>`` and ``<m>:<finding>``."""
    out = {f"macro_{m}": metrics.get(f"macro_{m}") for m in METRICS}
    for entry in metrics["per_finding"]:
        for m in METRICS:
            out[f"{m}{_SEP}{entry['finding']}"] = entry[m]
    return out


def findings_replicates(
    y: np.ndarray, mask: np.ndarray, scores: np.ndarray, findings: Sequence[str], thresholds: Sequence[float], indices: np.ndarray
) -> dict[str, np.ndarray]:
    """Every findings metric on every resample (rows of ``indices``), NaN where undefined.

    ``thresholds`` are the cut-offs the point estimate used (a score at or above is positive)."""
    y, mask, scores = (np.asarray(a, dtype=np.float64) for a in (y, mask, scores))
    counts = weighted_counts(indices, len(y))
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(findings):
        keep = mask[:, j] > 0
        truth, score, weights = y[keep, j] > 0, scores[keep, j], counts[:, keep]
        for metric, values in _finding_replicates(truth, score, weights, thresholds[j]).items():
            out[f"{metric}{_SEP}{name}"] = values
    return out


def _finding_replicates(truth: np.ndarray, score: np.ndarray, weights: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    n_pos = weights @ truth.astype(np.float64)
    n_neg = weights @ (~truth).astype(np.float64)
    predicted = score >= threshold
    tp = weights @ (truth & predicted).astype(np.float64)
    fp = weights @ (~truth & predicted).astype(np.float64)
    fn, tn = n_pos - tp, n_neg - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "auroc": binary_auroc_replicates(truth, score, weights),
            "auprc": _average_precision_replicates(truth, score, weights, n_pos),
            "f1": np.where(n_pos > 0, 2 * tp / (2 * tp + fp + fn), np.nan),
            "sensitivity": np.where(n_pos > 0, tp / n_pos, np.nan),
            "specificity": np.where(n_neg > 0, tn / n_neg, np.nan),
        }


def _average_precision_replicates(truth: np.ndarray, score: np.ndarray, weights: np.ndarray, n_pos: np.ndarray) -> np.ndarray:
    """scikit-learn's average precision, Σ (R_k − R_{k−1}) P_k over the distinct scores from the
    highest down, with each image weighted by how often it was drawn; NaN without a positive."""
    out = np.full(weights.shape[0], np.nan)
    if score.size == 0:
        return out
    order = np.argsort(-score, kind="mergesort")
    s = score[order]
    w = weights[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # one group per distinct score
    tp = np.cumsum(np.add.reduceat(w * truth[order], starts, axis=1), axis=1)
    fp = np.cumsum(np.add.reduceat(w * ~truth[order], starts, axis=1), axis=1)
    defined = n_pos > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = tp / n_pos[:, None]
    gained = np.diff(np.concatenate([np.zeros((len(w), 1)), recall], axis=1), axis=1)
    out[defined] = (gained * precision).sum(axis=1)[defined]
    return out


def add_macro_replicates(replicates: dict[str, np.ndarray], metrics: dict) -> dict[str, np.ndarray]:
    """``macro_<m>`` replicates: the mean over the findings in the point's macro; a resample where
    one of them is undefined is NaN (skipped), see the module docstring."""
    out = dict(replicates)
    for m in METRICS:
        names = [e["finding"] for e in metrics["per_finding"] if e[m] is not None]
        if names:
            stacked = np.stack([replicates[f"{m}{_SEP}{n}"] for n in names], axis=1)
            out[f"macro_{m}"] = stacked.mean(axis=1)  # NaN as soon as one finding is undefined
    return out


def findings_intervals(
    y, mask, scores, findings: Sequence[str], thresholds: Sequence[float], metrics: dict, resamples: int, seed: int
) -> tuple[dict[str, Interval], dict[str, np.ndarray]]:
    """``(intervals, replicates)`` for every defined findings metric (flat names, see above)."""
    blocks = resample_blocks(len(y), resamples, seed)
    replicates = concat_replicates(findings_replicates(y, mask, scores, findings, thresholds, block) for block in blocks)
    replicates = add_macro_replicates(replicates, metrics)
    return intervals(flat_metrics(metrics), replicates), replicates


def paired_findings(ref, other) -> dict[str, Interval]:
    """Intervals of ``other − ref`` (``FindingsResult``s with replicates) on the same images."""
    return paired_intervals(flat_metrics(ref.metrics), flat_metrics(other.metrics), ref.replicates, other.replicates)


def nested(flat: dict[str, Interval]) -> dict:
    """Flat intervals as JSON: ``{"macro": {m: ...}, "per_finding": {finding: {m: ...}}}``."""
    out: dict = {"macro": {}, "per_finding": {}}
    for name, interval in flat.items():
        if name.startswith("macro_"):
            out["macro"][name[len("macro_"):]] = interval.to_json()
        else:
            metric, _, finding = name.partition(_SEP)
            out["per_finding"].setdefault(finding, {})[metric] = interval.to_json()
    return out
