"""How sure each number is: percentile bootstrap intervals, paired differences, exact McNemar.

The bootstrap resamples the evaluated images with replacement (``resamples`` times, seeded, so a
rerun gives the same interval), recomputes each metric on every resample and takes the 2.5 and
97.5 percentiles. Resamples are a matrix of image indices; each metric is computed for all of them
at once from per-image arrays (a resample is a count of how often each image was drawn), so 1,000
resamples of a few hundred images take milliseconds per metric. A paired comparison applies the
same index matrix to both models, so the interval of a difference reflects only the images. The
matrix is drawn and scored a block of resamples at a time (``BLOCK_ENTRIES``), so memory stays
flat in the number of images: the whole matrix and its counts are 1,000 × n × 8 bytes each.

Retrieval resamples its queries with the gallery fixed: images for image→text, captions for
text→image (a caption is the query there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

LEVEL = 0.95
DEFAULT_RESAMPLES = 1000
SIGNIFICANCE = 0.05
_IMAGE_STREAM, _CAPTION_STREAM = 0, 1
# Indices drawn and scored at a time (resamples × items; 4 Mi: 32 MiB per float64 array of them).
BLOCK_ENTRIES = 1 << 22


@dataclass(frozen=True)
class Interval:
    """A point estimate and its percentile bootstrap interval. ``undefined`` counts resamples in
    which the metric does not exist (AUROC when a resample lost every image of a class)."""

    point: float
    low: float | None
    high: float | None
    resamples: int
    level: float = LEVEL
    undefined: int = 0

    def to_json(self) -> dict:
        out = {"point": self.point, "low": self.low, "high": self.high, "resamples": self.resamples, "level": self.level}
        if self.undefined:
            out["undefined_resamples"] = self.undefined
        return out

    def format(self, signed: bool = False) -> str:
        """``0.914 [0.876, 0.947]`` (``+0.031 [-0.010, 0.072]`` with ``signed``)."""
        spec = "+.3f" if signed else ".3f"
        if self.low is None or self.high is None:
            return format(self.point, spec)
        return f"{self.point:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"

    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def resample_indices(n: int, resamples: int, seed: int, stream: int = _IMAGE_STREAM) -> np.ndarray:
    """``[resamples, n]`` indices drawn with replacement; the same (n, resamples, seed, stream)
    always gives the same matrix (for a large ``n``, draw it in blocks: :func:`resample_blocks`)."""
    return next(resample_blocks(n, resamples, seed, stream, rows=resamples))


def resample_blocks(n: int, resamples: int, seed: int, stream: int = _IMAGE_STREAM, rows: int | None = None) -> Iterator[np.ndarray]:
    """The rows of :func:`resample_indices` (the same numbers, from the same generator in order),
    ``rows`` at a time (default: as many as ``BLOCK_ENTRIES`` allows)."""
    if n < 1 or resamples < 1:
        raise ValueError(f"need at least one item and one resample (got n={n}, resamples={resamples})")
    rng = np.random.default_rng([seed, stream])
    step = rows if rows is not None else block_rows(n)
    for start in range(0, resamples, step):
        yield rng.integers(0, n, size=(min(step, resamples - start), n))


def block_rows(n: int) -> int:
    """Resamples of ``n`` items per block."""
    return max(1, BLOCK_ENTRIES // max(1, n))


def concat_replicates(blocks: Iterable[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The replicates of consecutive blocks of resamples as one ``[resamples]`` array per metric."""
    parts = list(blocks)
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def percentile_interval(point: float, replicates: np.ndarray, level: float = LEVEL) -> Interval:
    """The percentile interval of ``replicates`` (NaN entries are resamples without the metric)."""
    replicates = np.asarray(replicates, dtype=np.float64)
    defined = replicates[~np.isnan(replicates)]
    tail = 100 * (1 - level) / 2
    if defined.size == 0:
        return Interval(float(point), None, None, int(replicates.size), level, int(replicates.size))
    low, high = np.percentile(defined, [tail, 100 - tail])
    return Interval(float(point), float(low), float(high), int(replicates.size), level, int(replicates.size - defined.size))


def weighted_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """How often each of ``n`` items is drawn in each resample: ``[resamples, n]``."""
    resamples = indices.shape[0]
    offsets = indices + n * np.arange(resamples)[:, None]
    return np.bincount(offsets.ravel(), minlength=resamples * n).reshape(resamples, n).astype(np.float64)


def classification_replicates(y_true: Sequence[int], scores: np.ndarray, indices: np.ndarray, top_k: int = 5) -> dict[str, np.ndarray]:
    """Each classification metric on each resample (rows of ``indices``), as ``metrics.py``
    defines it: averages over the classes present in the resample; NaN where undefined."""
    y = np.asarray(y_true, dtype=int)
    scores = np.asarray(scores, dtype=np.float64)
    n, n_classes = scores.shape
    counts = weighted_counts(indices, n)
    onehot = np.eye(n_classes)[y]  # [n, C]
    pred = scores.argmax(axis=1)
    correct = (pred == y).astype(np.float64)
    support = counts @ onehot  # [B, C]
    hits = counts @ (onehot * correct[:, None])
    predicted = counts @ np.eye(n_classes)[pred]
    present = support > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(present, hits / support, np.nan)
        denominator = support + predicted
        f1 = np.where(denominator > 0, 2 * hits / denominator, 0.0)
    out = {
        "accuracy@1": counts @ correct / n,
        "balanced_accuracy": np.nanmean(recall, axis=1),
        "macro_f1": np.where(present, f1, 0.0).sum(axis=1) / present.sum(axis=1),
        "weighted_f1": (f1 * support).sum(axis=1) / n,
    }
    if n_classes >= top_k:
        true_score = scores[np.arange(n), y]
        rank = (scores > true_score[:, None]).sum(axis=1)
        out[f"accuracy@{top_k}"] = counts @ (rank < top_k).astype(np.float64) / n
    auroc = _auroc_replicates(y, scores, counts)
    with np.errstate(invalid="ignore"), _quiet_nanmean():
        out["macro_auroc"] = np.nanmean(auroc, axis=1)
    return out


def _auroc_replicates(y: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """One-vs-rest AUROC of each class on each resample, ``[B, C]``."""
    out = np.full((counts.shape[0], scores.shape[1]), np.nan)
    for c in range(scores.shape[1]):
        out[:, c] = binary_auroc_replicates(y == c, scores[:, c], counts)
    return out


def binary_auroc_replicates(positive: np.ndarray, score: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """AUROC of ``score`` for the ``positive`` items on each resample, ``[B]``: the Mann–Whitney
    statistic with each item weighted by how often it was drawn (ties count one half); NaN where a
    resample lacks a positive or a negative."""
    out = np.full(counts.shape[0], np.nan)
    if score.size == 0:
        return out
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    positive = np.asarray(positive, dtype=bool)[order]
    weights = counts[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # one group per distinct score
    pos = np.add.reduceat(weights * positive, starts, axis=1)
    neg = np.add.reduceat(weights * ~positive, starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    wins = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    defined = (n_pos > 0) & (n_neg > 0)
    out[defined] = wins[defined] / (n_pos[defined] * n_neg[defined])
    return out


class _quiet_nanmean:
    """nanmean of an all-NaN row is NaN (an undefined resample), without numpy's warning."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)


def retrieval_replicates(
    rank_i2t: np.ndarray, rank_t2i: np.ndarray, image_indices: np.ndarray, caption_indices: np.ndarray, ks: Sequence[int]
) -> dict[str, np.ndarray]:
    """Recall@k and median rank both ways on each resample, from 0-based ranks (``retrieval.py``)."""
    rank_i2t = np.asarray(rank_i2t)
    rank_t2i = np.asarray(rank_t2i)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"image_to_text_R@{k}"] = (rank_i2t[image_indices] < k).mean(axis=1)
        out[f"text_to_image_R@{k}"] = (rank_t2i[caption_indices] < k).mean(axis=1)
    out["image_to_text_median_rank"] = np.median(rank_i2t[image_indices] + 1, axis=1).astype(np.float64)
    out["text_to_image_median_rank"] = np.median(rank_t2i[caption_indices] + 1, axis=1).astype(np.float64)
    return out


def task_replicates(kind: str, arrays: dict, resamples: int, seed: int, ks: Sequence[int] = (1, 5, 10)) -> dict[str, np.ndarray]:
    """Replicates of every metric of one task from its per-image arrays (see ``evaluate.py``):
    ``y_true`` and ``scores`` for classification, ``rank_i2t`` and ``rank_t2i`` for retrieval."""
    if kind == "retrieval":
        n_images, n_captions = len(arrays["rank_i2t"]), len(arrays["rank_t2i"])
        rows = block_rows(max(n_images, n_captions))  # the two streams' blocks in step
        images = resample_blocks(n_images, resamples, seed, _IMAGE_STREAM, rows)
        captions = resample_blocks(n_captions, resamples, seed, _CAPTION_STREAM, rows)
        return concat_replicates(
            retrieval_replicates(arrays["rank_i2t"], arrays["rank_t2i"], i, c, ks) for i, c in zip(images, captions)
        )
    blocks = resample_blocks(len(arrays["y_true"]), resamples, seed, _IMAGE_STREAM)
    return concat_replicates(classification_replicates(arrays["y_true"], arrays["scores"], block) for block in blocks)


def intervals(metrics: dict, replicates: dict[str, np.ndarray], level: float = LEVEL) -> dict[str, Interval]:
    """An interval for every metric that has replicates and a defined point value."""
    return {
        name: percentile_interval(metrics[name], values, level)
        for name, values in replicates.items()
        if isinstance(metrics.get(name), (int, float))
    }


def paired_intervals(
    metrics_a: dict, metrics_b: dict, replicates_a: dict[str, np.ndarray], replicates_b: dict[str, np.ndarray], level: float = LEVEL
) -> dict[str, Interval]:
    """Intervals of B − A for each metric, from replicates drawn with the same indices."""
    out = {}
    for name in replicates_a:
        a, b = metrics_a.get(name), metrics_b.get(name)
        if name in replicates_b and isinstance(a, (int, float)) and isinstance(b, (int, float)):
            out[name] = percentile_interval(b - a, replicates_b[name] - replicates_a[name], level)
    return out


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test on paired right/wrong outcomes: ``only_a`` images only model A got right,
    ``only_b`` only B; two-sided binomial test of min(only_a, only_b) of their sum at p = 0.5."""

    only_a: int
    only_b: int
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value < SIGNIFICANCE

    def to_json(self) -> dict:
        return {"only_a_correct": self.only_a, "only_b_correct": self.only_b, "p_value": self.p_value, "significant_at_0.05": self.significant}

    def words(self) -> str:
        verdict = "significant at 0.05" if self.significant else "not significant at 0.05"
        return f"exact McNemar p = {self.p_value:.3g} ({self.only_a} vs {self.only_b} discordant images): {verdict}"


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> McNemar:
    from scipy.stats import binomtest

    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes differ in length ({a.size} vs {b.size})")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(binomtest(min(only_a, only_b), discordant, 0.5).pvalue)
    return McNemar(only_a, only_b, p)
