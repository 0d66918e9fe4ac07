"""Few-shot linear probes: planted signals are recovered, the fit is plain scikit-learn, draws are
disjoint from the evaluated images and shared by models, bad tasks are one clear line."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from medclip_cli.errors import DataError, UsageError
from medclip_cli.evaluation.embed_file import EmbeddingTable
from medclip_cli.evaluation.probe import ProbeConfig, fit_probe, kshot_draws, parse_shots
from medclip_cli.evaluation.probe_run import ProbeSource, probe_tasks

DIM = 32
CLASSES = ["a", "b", "c"]


def planted(n_train=60, n_eval=90, seed=0, noise=0.6, dim=DIM, identity_seed=0):
    """Unit-length embeddings whose class is the sign pattern along 3 planted directions."""
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(np.random.default_rng(99).normal(size=(dim, len(CLASSES))))[0].T  # orthonormal rows
    rows, labels, splits, ids = [], [], [], []
    for split, n in (("train", n_train), ("test", n_eval)):
        for i in range(n):
            c = i % len(CLASSES)
            v = 2.0 * directions[c] + noise * rng.normal(size=dim)
            rows.append(v / np.linalg.norm(v))
            labels.append(CLASSES[c])
            splits.append(split)
            ids.append(f"{split}-{i}")
    table = EmbeddingTable(
        image=np.asarray(rows, dtype=np.float32),
        ids=ids,
        paths=[f"/images/{i}.png" for i in ids],
        splits=splits,
        captions=[None] * len(ids),
        labels={"kind": labels},
        identity={"name": f"planted-{identity_seed}", "weights_sha256": str(identity_seed), "preprocess": {}, "embed_dim": dim},
    )
    return table, directions


def test_parse_shots():
    assert parse_shots("all,16, 1,4,4") == [1, 4, 16, None]
    with pytest.raises(UsageError, match="'x' is neither"):
        parse_shots("1,x")
    with pytest.raises(UsageError, match="at least 1"):
        parse_shots("0")


def test_probe_recovers_planted_signal_and_matches_plain_sklearn():
    table, directions = planted()
    config = ProbeConfig(shots=[4, None], repeats=3, seed=7, cs=(0.1, 10.0, 1000.0))
    result = probe_tasks([ProbeSource("planted", table)], ["kind"], "train", "test", config)
    task = result.tasks[0]
    model = task.models[0]
    assert model["summary"]["all"]["accuracy@1"]["mean"] > 0.95  # the signal is strong: near perfect

    # The same fits done here with scikit-learn alone, on the draws the probe reports.
    train, evaluation = table.split("train"), table.split("test")
    where = {i: p for p, i in enumerate(train.ids)}
    y_eval = np.array([CLASSES.index(v) for v in evaluation.labels["kind"]])
    with threadpool_limits(limits=1):  # many tiny fits: one BLAS thread each
        for run in model["runs"]:
            ids = [i for i in train.ids] if run["k"] == "all" else task.draws[run["k"]][run["repeat"]]
            positions = [where[i] for i in ids]
            x, y = train.image[positions], np.array([CLASSES.index(train.labels["kind"][p]) for p in positions])
            folds = min(5, int(np.bincount(y).min()))
            plain = LogisticRegressionCV(
                Cs=list(config.cs), cv=StratifiedKFold(folds, shuffle=True, random_state=7 + run["repeat"]),
                scoring="accuracy", l1_ratios=(0.0,), max_iter=1000, use_legacy_attributes=False,
            ).fit(x, y)
            predicted = plain.predict(evaluation.image)
            assert run["C"] == pytest.approx(float(np.ravel(plain.C_)[0]))
            assert run["accuracy@1"] == pytest.approx(accuracy_score(y_eval, predicted))
            assert run["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_eval, predicted))
            assert run["macro_f1"] == pytest.approx(f1_score(y_eval, predicted, average="macro"))
    # mean ± sd over the repeats, computed independently
    four = [r["accuracy@1"] for r in model["runs"] if r["k"] == "4"]
    assert model["summary"]["4"]["accuracy@1"]["mean"] == pytest.approx(np.mean(four))
    assert model["summary"]["4"]["accuracy@1"]["sd"] == pytest.approx(np.std(four, ddof=1))
    assert model["summary"]["all"]["accuracy@1"]["sd"] is None  # drawn once

    # The fitted weights point along the planted directions.
    y_all = np.array([CLASSES.index(v) for v in train.labels["kind"]])
    clf, _, cross_validated = fit_probe(train.image, y_all, config, seed=0)
    assert cross_validated
    for c in range(len(CLASSES)):
        w = clf.coef_[c] - clf.coef_.mean(axis=0)
        d = directions[c] - directions.mean(axis=0)
        assert w @ d / (np.linalg.norm(w) * np.linalg.norm(d)) > 0.9


def test_one_shot_uses_fixed_c_and_says_so():
    table, _ = planted()
    result = probe_tasks([ProbeSource("planted", table)], ["kind"], "train", "test", ProbeConfig(shots=[1], repeats=2))
    runs = result.tasks[0].models[0]["runs"]
    assert all(not r["C_cross_validated"] and r["n_train"] == 3 for r in runs)


def test_draws_never_contain_evaluated_images_and_are_shared_by_models():
    one, _ = planted(seed=1, identity_seed=1)
    two, _ = planted(seed=2, identity_seed=2)  # another model: other vectors, same images and labels
    config = ProbeConfig(shots=[1, 2, 8], repeats=4, seed=3, cs=(1.0, 100.0))
    result = probe_tasks([ProbeSource("one", one), ProbeSource("two", two)], ["kind"], "train", "test", config)
    task = result.tasks[0]
    eval_ids = set(one.split("test").ids)
    labels = dict(zip(one.ids, one.labels["kind"]))
    for k, draws in task.draws.items():
        assert len(draws) == 4 and len({tuple(d) for d in draws}) == 4  # repeats differ
        for draw in draws:
            assert not set(draw) & eval_ids
            assert sorted(labels[i] for i in draw) == sorted(CLASSES * int(k))
    # both models were fitted on the same draws: same training sizes, one draw list per task
    assert [r["n_train"] for r in task.models[0]["runs"]] == [r["n_train"] for r in task.models[1]["runs"]]
    # and a draw does not depend on the other k asked for
    y = np.array([CLASSES.index(v) for v in one.split("train").labels["kind"]])
    alone = kshot_draws(y, 3, 2, 4, 3)
    train_ids = one.split("train").ids
    assert [[train_ids[p] for p in d] for d in alone] == task.draws["2"]


def test_train_and_eval_sharing_images_is_refused():
    table, _ = planted()
    leaked = table.rows(list(range(len(table))))
    leaked.ids = [i.replace("test-0", "train-0") if i == "test-0" else i for i in leaked.ids]
    with pytest.raises(DataError, match="in both --train-split 'train' and --eval-split 'test'"):
        probe_tasks([ProbeSource("x", leaked)], ["kind"], "train", "test", ProbeConfig(shots=[1], repeats=1))
    with pytest.raises(UsageError, match="both 'train'"):
        probe_tasks([ProbeSource("x", table)], ["kind"], "train", "train", ProbeConfig(shots=[1], repeats=1))


def test_task_with_one_class_is_one_line():
    table, _ = planted()
    table.labels["kind"] = ["a"] * len(table)
    with pytest.raises(DataError) as info:
        probe_tasks([ProbeSource("x", table)], ["kind"], "train", "test", ProbeConfig(shots=[1], repeats=1))
    assert "needs at least 2 classes" in str(info.value) and "\n" not in str(info.value)


def test_k_larger_than_a_class_is_one_line():
    table, _ = planted(n_train=30)  # 10 per class
    with pytest.raises(UsageError) as info:
        probe_tasks([ProbeSource("x", table)], ["kind"], "train", "test", ProbeConfig(shots=[4, 16], repeats=1))
    message = str(info.value)
    assert "--shots 16" in message and "has only 10 training images" in message and "\n" not in message
