"""Classification metrics on hand-made scores whose every value is worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from medclip_cli.evaluation.metrics import classification_metrics, save_confusion_png

CLASSES = ["a", "b", "c", "d"]
# 5 images; class d is listed but absent from the split. Predictions: a, b, b, a, c.
Y_TRUE = [0, 0, 1, 1, 2]
SCORES = np.array(
    [
        [0.7, 0.1, 0.1, 0.1],
        [0.2, 0.5, 0.1, 0.2],
        [0.1, 0.6, 0.2, 0.1],
        [0.4, 0.3, 0.2, 0.1],
        [0.1, 0.1, 0.7, 0.1],
    ]
)


def test_summary_metrics_match_hand_computed_values():
    m = classification_metrics(Y_TRUE, SCORES, CLASSES)
    assert m["n_images"] == 5 and m["n_classes"] == 4
    assert m["accuracy@1"] == pytest.approx(3 / 5)
    assert m["accuracy@5"] is None  # fewer than 5 classes
    # recall a = 1/2, b = 1/2, c = 1; d absent so not averaged
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    # F1 a = b = 0.5 (p = r = 1/2), c = 1
    assert m["macro_f1"] == pytest.approx(2 / 3)
    assert m["weighted_f1"] == pytest.approx((0.5 * 2 + 0.5 * 2 + 1 * 1) / 5)
    assert m["confusion_matrix"] == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]


def test_per_class_report_keeps_absent_classes_with_undefined_values():
    m = classification_metrics(Y_TRUE, SCORES, CLASSES)
    by_class = {row["class"]: row for row in m["per_class"]}
    assert [row["class"] for row in m["per_class"]] == CLASSES
    assert by_class["a"] == {"class": "a", "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2, "auroc": pytest.approx(5 / 6)}
    assert by_class["c"]["precision"] == 1.0 and by_class["c"]["support"] == 1
    assert by_class["d"] == {"class": "d", "precision": None, "recall": None, "f1": None, "support": 0, "auroc": None}
    assert m["absent_classes"] == ["d"]


def test_one_vs_rest_auroc_from_the_score_columns():
    m = classification_metrics(Y_TRUE, SCORES, CLASSES)
    auroc = [row["auroc"] for row in m["per_class"]]
    # a: positives 0.7, 0.2 vs negatives 0.1, 0.4, 0.1 -> 5 of 6 pairs ordered right
    # b: positives 0.6, 0.3 vs 0.1, 0.5, 0.1 -> 5 of 6;  c: 0.7 vs 0.1, 0.1, 0.2, 0.2 -> 1
    assert auroc[:3] == [pytest.approx(5 / 6), pytest.approx(5 / 6), pytest.approx(1.0)]
    assert m["macro_auroc"] == pytest.approx((5 / 6 + 5 / 6 + 1) / 3)


def test_accuracy_at_5_counts_the_true_class_among_the_five_best():
    classes = list("abcdef")
    scores = np.array([[0.5, 0.2, 0.1, 0.1, 0.06, 0.04], [0.5, 0.2, 0.1, 0.1, 0.06, 0.04]])
    m = classification_metrics([0, 5], scores, classes)  # image 2's class f is ranked 6th
    assert m["accuracy@1"] == 0.5
    assert m["accuracy@5"] == 0.5


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        classification_metrics([0, 1], SCORES, CLASSES)


def test_confusion_png_is_written_atomically(tmp_path):
    path = save_confusion_png([[3, 1], [0, 2]], ["CT", "MR"], tmp_path / "cm.png", "modality")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]


def test_accuracy_at_5_is_left_out_with_five_classes_or_fewer():
    scores = np.full((2, 5), 0.2)
    scores[:, 4] = 0.0  # the true class of both images is ranked last: still in the top 5 of 5
    assert classification_metrics([4, 4], scores, list("abcde"))["accuracy@5"] is None
