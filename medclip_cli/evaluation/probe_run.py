"""``probe``: few-shot linear probes of one or more models on one data set, beside their zero-shot
figures on the same evaluation images and classes.

Inputs are embedding tables (from ``medclip embed`` files, or embedded here through the cache);
every model is probed on the same draws of the same training images.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from medclip_cli.errors import DataError, UsageError
from medclip_cli.evaluation.embed_file import EmbeddingTable
from medclip_cli.evaluation.probe import ProbeConfig, check_task, kshot_draws, probe_model, shot_name, summarise
from medclip_cli.progress import NullProgress, ProgressReporter


@dataclass
class ProbeSource:
    """One model's embeddings of the training and evaluation splits, and its zero-shot scorer."""

    label: str
    table: EmbeddingTable
    #: (task, classes, eval rows) -> metrics of zero-shot classification, or None when unavailable
    zero_shot: Callable[[str, list[str], EmbeddingTable], dict] | None = None


@dataclass
class TaskProbe:
    task: str
    classes: list[str]
    n_train: int
    n_eval: int
    n_eval_excluded: int  # evaluation images whose class has no training image, or no label
    draws: dict  # shot name -> list of lists of training ids ("all": every training image)
    models: list[dict] = field(default_factory=list)


@dataclass
class ProbeResult:
    train_split: str
    eval_split: str
    config: ProbeConfig
    tasks: list[TaskProbe]
    seconds: float

    def to_json(self) -> dict:
        return {
            "train_split": self.train_split,
            "eval_split": self.eval_split,
            "shots": [shot_name(k) for k in self.config.shots],
            "repeats": self.config.repeats,
            "seed": self.config.seed,
            "c_grid": list(self.config.cs),
            "max_folds": self.config.folds,
            "seconds": round(self.seconds, 3),
            "tasks": {
                t.task: {
                    "classes": t.classes,
                    "n_train": t.n_train,
                    "n_eval": t.n_eval,
                    "n_eval_excluded": t.n_eval_excluded,
                    "draws": t.draws,
                    "models": t.models,
                }
                for t in self.tasks
            },
        }


def probe_tasks(
    sources: Sequence[ProbeSource],
    tasks: Sequence[str],
    train_split: str,
    eval_split: str,
    config: ProbeConfig,
    progress: ProgressReporter | None = None,
) -> ProbeResult:
    progress = progress or NullProgress()
    if not sources:
        raise UsageError("no model given", hint="pass --model DIR, --encoder NAME or --embeddings FILE")
    if train_split == eval_split:
        raise UsageError(f"--train-split and --eval-split are both {train_split!r}", hint="probe on one split, evaluate on another")
    start = time.perf_counter()
    trains = [s.table.split(train_split) for s in sources]
    evals = [s.table.split(eval_split) for s in sources]
    train_ids = _common_ids([t.ids for t in trains])
    eval_ids = _common_ids([t.ids for t in evals])
    _check_disjoint(trains[0], evals[0], train_split, eval_split)
    results = []
    for task in tasks:
        results.append(_probe_task(task, sources, trains, evals, train_ids, eval_ids, train_split, config, progress))
    return ProbeResult(train_split, eval_split, config, results, time.perf_counter() - start)


def _probe_task(task, sources, trains, evals, train_ids, eval_ids, train_split, config, progress) -> TaskProbe:
    first_train = _aligned(trains[0], train_ids)
    first_eval = _aligned(evals[0], eval_ids)
    if task not in first_train.labels:
        known = ", ".join(first_train.labels) or "none"
        raise UsageError(f"--task {task!r} is not a label field of these embeddings (fields: {known})")
    train_labels = first_train.labels[task]
    classes = sorted({v for v in train_labels if v is not None})
    train_rows = np.array([i for i, v in enumerate(train_labels) if v is not None], dtype=np.int64)
    index = {c: i for i, c in enumerate(classes)}
    train_y = np.array([index[train_labels[i]] for i in train_rows], dtype=np.int64)
    check_task(task, classes, train_y, config.shots, train_split)
    eval_labels = first_eval.labels.get(task, [None] * len(first_eval))
    eval_rows = np.array([i for i, v in enumerate(eval_labels) if v in index], dtype=np.int64)
    if not len(eval_rows):
        raise DataError(f"task {task!r}: no evaluation image has one of the training classes ({', '.join(classes)})")
    eval_y = np.array([index[eval_labels[i]] for i in eval_rows], dtype=np.int64)
    draws = {k: kshot_draws(train_y, len(classes), k, config.repeats, config.seed) for k in config.shots}
    n_fits = sum(len(d) for d in draws.values())
    bar = progress.task(f"probing {task}", total=n_fits * len(sources))
    models = []
    for source, train, evaluation in zip(sources, trains, evals):
        train_t = _aligned(train, train_ids)
        eval_t = _aligned(evaluation, eval_ids)
        _check_same_labels(source.label, task, train_t, first_train, eval_t, first_eval)
        runs = probe_model(
            train_t.image[train_rows], train_y, eval_t.image[eval_rows], eval_y, classes, draws, config,
            on_fit=lambda: progress.advance(bar),
        )
        zero_shot = source.zero_shot(task, classes, eval_t.rows(eval_rows)) if source.zero_shot else None
        models.append(
            {
                "label": source.label,
                "model": train_t.identity,
                "zero_shot": zero_shot,
                "summary": summarise(runs),
                "runs": [
                    {"k": shot_name(r.k), "repeat": r.repeat, "C": r.c, "C_cross_validated": r.c_cross_validated,
                     "n_train": r.n_train, **r.metrics}
                    for r in runs
                ],
            }
        )
    progress.done(bar)
    train_id_rows = [first_train.ids[i] for i in train_rows]
    return TaskProbe(
        task,
        classes,
        len(train_rows),
        len(eval_rows),
        len(first_eval) - len(eval_rows),
        {shot_name(k): "all" if k is None else [[train_id_rows[p] for p in d] for d in per_k] for k, per_k in draws.items()},
        models,
    )


def _common_ids(id_lists: list[list[str]]) -> list[str]:
    common = set(id_lists[0]).intersection(*id_lists[1:])
    ids = [i for i in dict.fromkeys(id_lists[0]) if i in common]
    if not ids:
        raise DataError("the models' embeddings share no image of this split", hint="embed the same data set with each model")
    return ids


def _aligned(table: EmbeddingTable, ids: list[str]) -> EmbeddingTable:
    where = {i: p for p, i in enumerate(table.ids)}
    return table.rows([where[i] for i in ids])


def _check_disjoint(train: EmbeddingTable, evaluation: EmbeddingTable, train_split: str, eval_split: str) -> None:
    shared = sorted(set(train.ids) & set(evaluation.ids) | set(train.paths) & set(evaluation.paths))
    if shared:
        raise DataError(
            f"{len(shared)} images are in both --train-split {train_split!r} and --eval-split {eval_split!r} "
            f"(e.g. {shared[0]}); a probe is never evaluated on images it was trained on",
            hint="use splits that share no image",
        )


def _check_same_labels(label, task, train, first_train, evaluation, first_eval) -> None:
    if train.labels.get(task) != first_train.labels.get(task) or evaluation.labels.get(task) != first_eval.labels.get(task):
        raise DataError(f"{label}: its {task!r} labels differ from the first model's for the same images", hint="embed one data set with every model")
