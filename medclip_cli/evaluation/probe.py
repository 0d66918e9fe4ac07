"""Few-shot linear probes on frozen image embeddings (the CLIP paper's and CLIP_benchmark's protocol).

For each k of ``shots``, ``repeats`` draws of k training images per class (seeded; every model
of a run gets the same draws); on each draw a scikit-learn logistic regression whose inverse
regularisation strength C is chosen by stratified cross-validation *inside the draw* (never on
the evaluated split), then scored on the evaluation split with the same metric code as zero-shot
(:func:`~medclip_cli.evaluation.metrics.classification_metrics`). With one image per class there
is nothing to cross-validate: C is fixed (``ONE_SHOT_C``) and the result says so.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from medclip_cli.errors import DataError, UsageError
from medclip_cli.evaluation.metrics import classification_metrics

ALL = None  # "all": every training image, drawn once
METRICS = ("accuracy@1", "balanced_accuracy", "macro_f1")
#: C candidates, a log sweep as in the CLIP paper (which sweeps 1e-6..1e6; unit-length features
#: need the upper part: C below 1e-2 predicts the majority class).
C_GRID = tuple(float(c) for c in np.logspace(-2, 4, 7))
ONE_SHOT_C = 10.0
MAX_FOLDS = 5


@dataclass
class ProbeConfig:
    shots: list[int | None] = field(default_factory=lambda: [1, 2, 4, 8, 16, ALL])
    repeats: int = 5
    seed: int = 0
    cs: tuple[float, ...] = C_GRID
    folds: int = MAX_FOLDS
    max_iter: int = 1000


def parse_shots(text: str) -> list[int | None]:
    """``"1,2,4,all"`` -> ``[1, 2, 4, None]`` (sorted, distinct; ``all`` last)."""
    values: list[int | None] = []
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        if part == "all":
            values.append(ALL)
            continue
        try:
            k = int(part)
        except ValueError:
            raise UsageError(f"--shots {text!r}: {part!r} is neither a number nor 'all'") from None
        if k < 1:
            raise UsageError(f"--shots {text!r}: k must be at least 1, not {k}")
        values.append(k)
    if not values:
        raise UsageError(f"--shots {text!r}: no values", hint="e.g. --shots 1,2,4,8,16,all")
    ints = sorted({v for v in values if v is not None})
    return [*ints, *([ALL] if ALL in values else [])]


def shot_name(k: int | None) -> str:
    return "all" if k is None else str(k)


def check_task(task: str, classes: Sequence[str], train_y: np.ndarray, shots: Sequence[int | None], split: str) -> None:
    """A task needs two classes with training images, and every k at most the smallest class."""
    counts = np.bincount(train_y, minlength=len(classes))
    if len(classes) < 2:
        raise DataError(
            f"task {task!r}: needs at least 2 classes with training images; split {split!r} has "
            f"{len(classes)} ({', '.join(classes) or 'none'})",
            hint="choose another --task or --train-split",
        )
    ks = [k for k in shots if k is not None]
    if ks and max(ks) > counts.min():
        small = int(np.argmin(counts))
        raise UsageError(
            f"--shots {max(ks)}: class {classes[small]!r} of task {task!r} has only {int(counts[small])} "
            f"training images in split {split!r}",
            hint=f"use --shots up to {int(counts.min())}, or all",
        )


def kshot_draws(train_y: np.ndarray, n_classes: int, k: int | None, repeats: int, seed: int) -> list[np.ndarray]:
    """Positions into the training rows: k per class, ``repeats`` times (``all``: once, every row).

    Each draw's generator is seeded by (seed, k, repeat), so a draw does not depend on which
    other k were asked for, and every model given the same rows gets the same draws.
    """
    if k is None:
        return [np.arange(len(train_y))]
    draws = []
    for repeat in range(repeats):
        rng = np.random.default_rng([seed, k, repeat])
        picked = [rng.choice(np.flatnonzero(train_y == c), size=k, replace=False) for c in range(n_classes)]
        draws.append(np.sort(np.concatenate(picked)))
    return draws


def fit_probe(x: np.ndarray, y: np.ndarray, config: ProbeConfig, seed: int):
    """A fitted logistic regression and the C it uses (cross-validated inside ``x`` when possible)."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    folds = min(config.folds, int(np.bincount(y).min()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings at extreme C candidates
        if folds < 2:
            clf = LogisticRegression(C=ONE_SHOT_C, max_iter=config.max_iter).fit(x, y)
            return clf, ONE_SHOT_C, False
        clf = LogisticRegressionCV(
            Cs=list(config.cs),
            cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed),
            scoring="accuracy",
            l1_ratios=(0.0,),
            max_iter=config.max_iter,
            use_legacy_attributes=False,
        ).fit(x, y)
    return clf, float(np.ravel(clf.C_)[0]), True


@dataclass
class ProbeRun:
    k: int | None
    repeat: int
    c: float
    c_cross_validated: bool
    n_train: int
    metrics: dict


def probe_model(
    train_x: np.ndarray,
    train_y: np.ndarray,
    eval_x: np.ndarray,
    eval_y: np.ndarray,
    classes: Sequence[str],
    draws: dict,
    config: ProbeConfig,
    on_fit=None,
) -> list[ProbeRun]:
    """Fit and score one probe per draw (``draws``: k -> list of position arrays)."""
    from threadpoolctl import threadpool_limits

    # Many small fits: one BLAS thread each is several times faster than a pool per fit.
    with threadpool_limits(limits=1):
        return _probe_draws(train_x, train_y, eval_x, eval_y, classes, draws, config, on_fit)


def _probe_draws(train_x, train_y, eval_x, eval_y, classes, draws, config, on_fit) -> list[ProbeRun]:
    runs = []
    for k, per_k in draws.items():
        for repeat, positions in enumerate(per_k):
            clf, c, cross_validated = fit_probe(train_x[positions], train_y[positions], config, config.seed + repeat)
            scores = clf.predict_proba(eval_x)
            full = classification_metrics(eval_y, _columns(scores, clf.classes_, len(classes)), list(classes))
            runs.append(ProbeRun(k, repeat, c, cross_validated, len(positions), {m: full[m] for m in METRICS}))
            if on_fit is not None:
                on_fit()
    return runs


def _columns(scores: np.ndarray, fitted: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(scores), n_classes))
    out[:, fitted] = scores
    return out


def summarise(runs: Sequence[ProbeRun]) -> dict[str, dict[str, dict]]:
    """shot name -> metric -> {mean, sd, n}: sd over repeats (ddof 1; None for a single run)."""
    out: dict[str, dict[str, dict]] = {}
    for k in dict.fromkeys(r.k for r in runs):
        values = {m: np.array([r.metrics[m] for r in runs if r.k == k]) for m in METRICS}
        out[shot_name(k)] = {
            m: {
                "mean": float(v.mean()),
                "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
                "n": int(len(v)),
            }
            for m, v in values.items()
        }
    return out
