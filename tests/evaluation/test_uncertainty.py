"""Bootstrap intervals, paired differences and the exact McNemar test, each checked against an
independent computation written here: a plain loop over the resamples calling scikit-learn, and
the McNemar p-value from scipy's binomial distribution and from statsmodels."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score, top_k_accuracy_score

from medclip_cli.evaluation import uncertainty
from medclip_cli.evaluation.metrics import classification_metrics
from medclip_cli.evaluation.uncertainty import (
    Interval,
    classification_replicates,
    intervals,
    mcnemar_exact,
    paired_intervals,
    resample_blocks,
    resample_indices,
    retrieval_replicates,
    task_replicates,
)
from tests.conftest import peak_rss_growth_mib

N, CLASSES, RESAMPLES = 60, 6, 400


def _data(seed: int = 3, skill: float = 1.5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, N)
    y[-1] = CLASSES - 1  # every class present
    logits = rng.normal(size=(N, CLASSES))
    logits[np.arange(N), y] += skill
    scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, scores


def _loop_metrics(y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Each metric of one resample the slow way: scikit-learn on the resampled arrays."""
    pred = scores.argmax(axis=1)
    present = sorted(set(y.tolist()))
    aurocs = [roc_auc_score(y == c, scores[:, c]) for c in range(CLASSES) if 0 < np.sum(y == c) < len(y)]
    return {
        "accuracy@1": accuracy_score(y, pred),
        "accuracy@5": top_k_accuracy_score(y, scores, k=5, labels=list(range(CLASSES))),
        "balanced_accuracy": balanced_accuracy_score(y, pred),
        "macro_f1": f1_score(y, pred, labels=present, average="macro", zero_division=0),
        "weighted_f1": f1_score(y, pred, labels=present, average="weighted", zero_division=0),
        "macro_auroc": float(np.mean(aurocs)) if aurocs else float("nan"),
    }


def test_classification_intervals_match_a_direct_resampling_loop():
    y, scores = _data()
    indices = resample_indices(N, RESAMPLES, seed=7)
    fast = classification_replicates(y, scores, indices)
    slow = [_loop_metrics(y[idx], scores[idx]) for idx in indices]
    assert set(fast) == set(slow[0])
    for name in fast:
        expected = np.array([row[name] for row in slow])
        np.testing.assert_allclose(fast[name], expected, rtol=0, atol=1e-12, err_msg=name)
        low, high = np.percentile(expected, [2.5, 97.5])
        point = classification_metrics(y, scores, [str(c) for c in range(CLASSES)])[name]
        got = intervals({name: point}, {name: fast[name]})[name]
        assert (got.low, got.high) == pytest.approx((low, high), abs=1e-12)
        assert got.low <= point <= got.high and got.resamples == RESAMPLES


def test_auroc_with_tied_scores_matches_scikit_learn():
    y = np.array([0, 1, 0, 1, 1, 0, 0, 1])
    scores = np.array([[0.5, 0.5]] * 4 + [[0.2, 0.8], [0.8, 0.2], [0.5, 0.5], [0.3, 0.7]])
    indices = resample_indices(len(y), 50, seed=1)
    fast = classification_replicates(y, scores, indices)["macro_auroc"]
    for value, idx in zip(fast, indices):
        yy = y[idx]
        if len(set(yy.tolist())) < 2:
            assert np.isnan(value)
        else:
            expected = np.mean([roc_auc_score(yy == c, scores[idx, c]) for c in range(2)])
            assert value == pytest.approx(expected, abs=1e-12)


def test_retrieval_intervals_match_a_direct_resampling_loop():
    rng = np.random.default_rng(0)
    rank_i2t = rng.integers(0, 30, 45)
    rank_t2i = rng.integers(0, 30, 38)
    images = resample_indices(45, 300, seed=2, stream=0)
    captions = resample_indices(38, 300, seed=2, stream=1)
    fast = retrieval_replicates(rank_i2t, rank_t2i, images, captions, ks=(1, 5, 10))
    for b in (0, 17, 299):
        i2t = [int(rank_i2t[i]) for i in images[b]]
        t2i = [int(rank_t2i[i]) for i in captions[b]]
        for k in (1, 5, 10):
            assert fast[f"image_to_text_R@{k}"][b] == pytest.approx(sum(r < k for r in i2t) / len(i2t))
            assert fast[f"text_to_image_R@{k}"][b] == pytest.approx(sum(r < k for r in t2i) / len(t2i))
        assert fast["image_to_text_median_rank"][b] == statistics.median(r + 1 for r in i2t)
        assert fast["text_to_image_median_rank"][b] == statistics.median(r + 1 for r in t2i)


def test_intervals_are_seeded():
    y, scores = _data()
    arrays = {"y_true": y, "scores": scores}
    one = task_replicates("classification", arrays, 200, seed=0)["accuracy@1"]
    again = task_replicates("classification", arrays, 200, seed=0)["accuracy@1"]
    other = task_replicates("classification", arrays, 200, seed=1)["accuracy@1"]
    assert np.array_equal(one, again)
    assert not np.array_equal(one, other)


def test_paired_interval_uses_the_same_images_for_both_models():
    y, weak = _data(skill=0.5)
    _, strong = _data(skill=3.0)
    indices = resample_indices(N, RESAMPLES, seed=4)
    ra = classification_replicates(y, weak, indices)
    rb = classification_replicates(y, strong, indices)
    names = [str(c) for c in range(CLASSES)]
    ma, mb = classification_metrics(y, weak, names), classification_metrics(y, strong, names)
    paired = paired_intervals(ma, mb, ra, rb)["accuracy@1"]
    diffs = [accuracy_score(y[i], strong[i].argmax(1)) - accuracy_score(y[i], weak[i].argmax(1)) for i in indices]
    assert paired.point == pytest.approx(mb["accuracy@1"] - ma["accuracy@1"])
    assert (paired.low, paired.high) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])), abs=1e-12)
    assert paired.excludes_zero()


@pytest.mark.parametrize("only_a, only_b, both, neither", [(3, 11, 30, 6), (5, 5, 10, 0), (0, 9, 1, 1), (1, 0, 0, 0), (0, 0, 4, 2)])
def test_mcnemar_exact_p_matches_scipy_and_statsmodels(only_a, only_b, both, neither):
    from scipy.stats import binom
    from statsmodels.stats.contingency_tables import mcnemar

    a = [True] * only_a + [False] * only_b + [True] * both + [False] * neither
    b = [False] * only_a + [True] * only_b + [True] * both + [False] * neither
    result = mcnemar_exact(a, b)
    assert (result.only_a, result.only_b) == (only_a, only_b)
    n = only_a + only_b
    by_hand = 1.0 if n == 0 else min(1.0, 2 * binom.cdf(min(only_a, only_b), n, 0.5))
    table = [[both, only_a], [only_b, neither]]
    assert result.p_value == pytest.approx(by_hand, rel=1e-12)
    assert result.p_value == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-12)
    assert result.significant == (by_hand < 0.05)
    assert ("not significant" in result.words()) == (by_hand >= 0.05)


def test_interval_format():
    assert Interval(0.9141, 0.8762, 0.9473, 1000).format() == "0.914 [0.876, 0.947]"
    assert Interval(0.031, -0.01, 0.072, 1000).format(signed=True) == "+0.031 [-0.010, +0.072]"


@pytest.mark.parametrize("n", [1, 2, 7, 197, 1001])
def test_blocks_of_resamples_are_the_rows_of_the_whole_matrix(n):
    whole = resample_indices(n, 37, seed=4, stream=1)
    for rows in (1, 3, 36, 37, 100):
        np.testing.assert_array_equal(np.concatenate(list(resample_blocks(n, 37, 4, 1, rows))), whole)


def test_replicates_scored_in_blocks_equal_the_whole_matrix(monkeypatch):
    y, scores = _data()
    rng = np.random.default_rng(0)
    retrieval = {"rank_i2t": rng.integers(0, 30, 45), "rank_t2i": rng.integers(0, 30, 38)}
    whole_cls = classification_replicates(y, scores, resample_indices(N, RESAMPLES, seed=7))
    whole_ret = retrieval_replicates(retrieval["rank_i2t"], retrieval["rank_t2i"], resample_indices(45, RESAMPLES, 7, 0),
                                     resample_indices(38, RESAMPLES, 7, 1), (1, 5, 10))  # fmt: skip
    monkeypatch.setattr(uncertainty, "BLOCK_ENTRIES", 45 * 11)  # 11 resamples a block: 37 blocks
    blocked_cls = task_replicates("classification", {"y_true": y, "scores": scores}, RESAMPLES, seed=7)
    blocked_ret = task_replicates("retrieval", retrieval, RESAMPLES, seed=7)
    for whole, blocked in ((whole_cls, blocked_cls), (whole_ret, blocked_ret)):
        assert whole.keys() == blocked.keys()
        for name in whole:
            np.testing.assert_array_equal(blocked[name], whole[name], err_msg=name)


def test_bootstrap_memory_stays_flat_in_the_number_of_images():
    """20,000 images, 1,000 resamples: the whole index matrix and its counts took over 1 GiB."""
    setup = (
        "import numpy as np\n"
        "from medclip_cli.evaluation.uncertainty import task_replicates\n"
        "rng = np.random.default_rng(0)\n"
        "y, scores = rng.integers(0, 5, 20000), rng.random((20000, 5))"
    )
    grew = peak_rss_growth_mib(setup, "task_replicates('classification', {'y_true': y, 'scores': scores}, 1000, 0)")
    assert grew < 400, f"1,000 resamples of 20,000 images raised peak RSS by {grew:.0f} MiB"
