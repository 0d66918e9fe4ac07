"""Classification metrics from scikit-learn, and the confusion-matrix picture.

Every number here is a scikit-learn function applied to (true class, scores) so anyone can
recompute it from ``predictions_<task>.csv``. Classes listed for a task but absent from the split
stay in the per-class report with support 0 and undefined (None) recall, F1 and AUROC; averages
are over the classes present, and the absent ones are named in ``absent_classes``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from medclip_cli.atomic import save_png

TOP_K = 5  # accuracy@5 is reported only when a task has more classes than this
# Metrics where a smaller number is the better model: losses and ranks (every other metric here,
# accuracy, recall, F1, AUROC, is better higher).
_LOWER_IS_BETTER = ("loss", "median_rank")


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` (e.g. ``val_loss``, ``image_to_text_median_rank``) is better."""
    return metric.endswith(_LOWER_IS_BETTER)


def classification_metrics(y_true: Sequence[int], scores: np.ndarray, class_names: Sequence[str]) -> dict:
    """Metrics of one zero-shot task. ``scores[i, c]`` is image i's probability of class c."""
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        classification_report,
        confusion_matrix,
        f1_score,
        top_k_accuracy_score,
    )

    y_true = np.asarray(y_true, dtype=int)
    scores = np.asarray(scores, dtype=np.float64)
    n_classes = len(class_names)
    if scores.shape != (len(y_true), n_classes):
        raise ValueError(f"scores have shape {scores.shape}, expected {(len(y_true), n_classes)}")
    all_labels = list(range(n_classes))
    y_pred = scores.argmax(axis=1)
    support = np.bincount(y_true, minlength=n_classes)
    present = [c for c in all_labels if support[c] > 0]
    with warnings.catch_warnings():
        # Absent classes are reported in ``absent_classes``; sklearn's warnings would repeat it.
        warnings.simplefilter("ignore")
        # The seed's classification report, one entry per listed class (keys are indices so a
        # class called "macro avg" cannot collide with the report's own rows).
        report = classification_report(
            y_true, y_pred, labels=all_labels, target_names=[str(c) for c in all_labels],
            output_dict=True, zero_division=np.nan,
        )
        balanced = float(balanced_accuracy_score(y_true, y_pred))
        # With k classes or fewer the top k holds every class: accuracy@k is 1 by construction and
        # says nothing (CLIP_benchmark reports it anyway), so it is left out (None).
        top5 = float(top_k_accuracy_score(y_true, scores, k=TOP_K, labels=all_labels)) if n_classes > TOP_K else None
    auroc = _one_vs_rest_auroc(y_true, scores, support)
    per_class = [
        {
            "class": class_names[c],
            "precision": _number(report[str(c)]["precision"]),
            "recall": _number(report[str(c)]["recall"]),
            "f1": _number(report[str(c)]["f1-score"]) if support[c] > 0 else None,
            "support": int(support[c]),
            "auroc": auroc[c],
        }
        for c in all_labels
    ]
    defined_auroc = [a for a in auroc if a is not None]
    return {
        "n_images": int(len(y_true)),
        "n_classes": n_classes,
        "accuracy@1": float(accuracy_score(y_true, y_pred)),
        "accuracy@5": top5,
        # Mean recall over the classes present (CLIP_benchmark's mean_per_class_recall).
        "balanced_accuracy": balanced,
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)),
        "macro_auroc": float(np.mean(defined_auroc)) if defined_auroc else None,
        "per_class": per_class,
        "absent_classes": [class_names[c] for c in all_labels if support[c] == 0],
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=all_labels).tolist(),
    }


def _one_vs_rest_auroc(y_true: np.ndarray, scores: np.ndarray, support: np.ndarray) -> list[float | None]:
    """AUROC of each class against the rest from its score column; None where a class has no
    positive or no negative image (the curve is undefined)."""
    from sklearn.metrics import roc_auc_score

    n = len(y_true)
    return [
        float(roc_auc_score(y_true == c, scores[:, c])) if 0 < support[c] < n else None
        for c in range(scores.shape[1])
    ]


def _number(value: float) -> float | None:
    return None if value is None or math.isnan(float(value)) else float(value)


def save_confusion_png(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Draw the confusion matrix (rows: true, columns: predicted) as a PNG, written atomically."""
    figure = confusion_figure(matrix, class_names, title)
    return save_png(figure, path)


def confusion_figure(matrix: Sequence[Sequence[int]], class_names: Sequence[str], title: str = ""):
    """The confusion matrix as a matplotlib Figure, every label inside it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, dtype=int)
    n = len(class_names)
    size = max(4.0, 1.0 + 0.7 * n)
    # Constrained layout makes room for long, rotated class names and the colorbar; tight_layout
    # pushed the "true" axis label off the left edge with 19 classes.
    figure = Figure(figsize=(size + 1.5, size), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(counts, cmap="Blues", vmin=0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(range(n), labels=class_names, rotation=45, ha="right")
    axes.set_yticks(range(n), labels=class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if title:
        axes.set_title(title)
    threshold = counts.max() / 2 if counts.size and counts.max() > 0 else 0
    for i in range(n):
        for j in range(n):
            colour = "white" if counts[i, j] > threshold else "black"
            axes.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour)
    _grow_to_fit(figure)
    return figure


def _grow_to_fit(figure) -> None:
    """Enlarge ``figure`` until every label lies inside it (long class names, many classes)."""
    for _ in range(4):
        figure.canvas.draw()  # runs the constrained layout
        tight = figure.get_tightbbox(figure.canvas.get_renderer())  # inches
        width, height = figure.get_size_inches()
        extra_w = max(0.0, -tight.x0) + max(0.0, tight.x1 - width)
        extra_h = max(0.0, -tight.y0) + max(0.0, tight.y1 - height)
        if extra_w < 0.01 and extra_h < 0.01:
            return
        figure.set_size_inches(width + extra_w + 0.2, height + extra_h + 0.2)
