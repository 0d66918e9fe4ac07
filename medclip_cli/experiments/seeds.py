"""An experiment's figures over its seeds: each seed's values with their bootstrap intervals and
paired tests, and the mean ± standard deviation across seeds (the headline)."""

from __future__ import annotations

import statistics
from typing import Callable, Sequence

from medclip_cli.evaluation.comparison import MCNEMAR_METRIC


def seed_rows(seed_runs: Sequence, supervision: dict[str, str], headline: Callable[[str, dict], list[str]], labels: tuple[str, str]) -> list[dict]:
    """Rows of task × metric. ``labels`` are the (baseline, fine-tuned) model labels.

    ``baseline``, ``fine-tuned`` and ``difference`` are means over the seeds; ``sd`` holds their
    sample standard deviations (None with one seed); ``per_seed`` each seed's values, intervals
    (``low``/``high`` of the percentile bootstrap; the difference's is paired) and, for the
    task's right/wrong metric, the exact McNemar test.
    """
    base_label, tuned_label = labels
    first = {m.label: m for m in seed_runs[0].evaluation.models}
    rows = []
    for task in seed_runs[0].evaluation.tasks:
        base_task = first[base_label].tasks[task]
        for metric in headline(base_task.kind, base_task.metrics):
            per_seed = [_seed_values(run, task, metric, labels) for run in seed_runs]
            row = {"task": task, "metric": metric, "supervision": supervision.get(task)}
            for key in (base_label, tuned_label, "difference"):
                values = [s[key] for s in per_seed if isinstance(s[key], (int, float))]
                row[key] = statistics.fmean(values) if values and len(values) == len(per_seed) else None
            row["sd"] = (
                {key: _sd([s[key] for s in per_seed]) for key in (base_label, tuned_label, "difference")} if len(per_seed) > 1 else None
            )
            row["per_seed"] = per_seed
            rows.append(row)
    return rows


def _seed_values(run, task: str, metric: str, labels: tuple[str, str]) -> dict:
    base_label, tuned_label = labels
    models = {m.label: m for m in run.evaluation.models}
    base = models[base_label].tasks[task]
    tuned = models[tuned_label].tasks[task] if tuned_label in models else None
    b = base.metrics.get(metric)
    t = tuned.metrics.get(metric) if tuned is not None else None
    out = {
        "seed": run.seed,
        base_label: b,
        tuned_label: t,
        "difference": t - b if isinstance(t, (int, float)) and isinstance(b, (int, float)) else None,
        "intervals": {},
    }
    if metric in base.intervals:
        out["intervals"][base_label] = base.intervals[metric].to_json()
    if tuned is not None and metric in tuned.intervals:
        out["intervals"][tuned_label] = tuned.intervals[metric].to_json()
    for comparison in run.evaluation.comparisons:
        if comparison["task"] == task and comparison.get("same_images"):
            if metric in comparison["differences"]:
                out["intervals"]["difference"] = comparison["differences"][metric]
            if comparison["mcnemar"]["metric"] == metric == MCNEMAR_METRIC[base.kind]:
                out["mcnemar"] = comparison["mcnemar"]
    return out


def _sd(values: list) -> float | None:
    numbers = [v for v in values if isinstance(v, (int, float))]
    return statistics.stdev(numbers) if len(numbers) == len(values) and len(numbers) > 1 else None
