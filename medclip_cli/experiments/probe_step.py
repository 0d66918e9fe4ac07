"""An experiment's optional ``[probe]`` step: few-shot linear probes on the frozen embeddings of
the starting model (and of the fine-tuned one), so one report puts zero-shot, few-shot probe and
fine-tuned side by side.

``[probe]`` keys: ``tasks`` (default: the ``[evaluate]`` tasks other than retrieval), ``shots``
(``"1,2,4,8,16,all"``), ``repeats`` (5) and ``train_split`` (default ``data.train_split``); the
probes are scored on ``data.eval_split``, the split the zero-shot figures come from.
"""

from __future__ import annotations

from typing import Any, Sequence

from medclip_cli.experiments.config import Experiment, ExperimentConfigError

PROBE_KEYS = {"tasks": None, "shots": "1,2,4,8,16,all", "repeats": 5, "train_split": None}


def probe_settings(experiment: Experiment) -> dict[str, Any] | None:
    """The ``[probe]`` settings with defaults filled in, or None when the experiment has none."""
    raw = experiment.settings.get("probe")
    if raw is None:
        return None
    unknown = [k for k in raw if k not in PROBE_KEYS]
    if unknown:
        raise ExperimentConfigError(f"{experiment.path}: unknown key probe.{unknown[0]} (known: {', '.join(PROBE_KEYS)})")
    settings = {**PROBE_KEYS, **raw}
    if settings["tasks"] is None:
        settings["tasks"] = [t for t in experiment.settings["evaluate"]["tasks"] if t != "retrieval"]
    if settings["train_split"] is None:
        settings["train_split"] = experiment.settings["data"]["train_split"]
    if isinstance(settings["shots"], list):
        settings["shots"] = ",".join(str(s) for s in settings["shots"])
    if not isinstance(settings["repeats"], int) or settings["repeats"] < 1:
        raise ExperimentConfigError(f"{experiment.path}: probe.repeats must be a positive integer")
    return settings


def run_probe_step(experiment: Experiment, settings: dict, train_set, eval_set, models: Sequence[tuple[str, object]], progress=None) -> dict:
    """Probe each ``(label, model)`` on the same draws; returns ``ProbeResult.to_json()``."""
    from medclip_cli.evaluation.probe import ProbeConfig, parse_shots
    from medclip_cli.evaluation.probe_run import probe_tasks
    from medclip_cli.evaluation.probe_sources import probe_source_for_model

    seed = int(experiment.settings["experiment"]["seed"])
    config = ProbeConfig(shots=parse_shots(str(settings["shots"])), repeats=int(settings["repeats"]), seed=seed)
    tasks = list(settings["tasks"])
    sources = [
        probe_source_for_model(
            model, label, {"experiment": experiment.name, "model": label}, [train_set, eval_set], tasks,
            prompts=experiment.settings["evaluate"]["prompts"], batch_size=int(experiment.settings["evaluate"]["batch_size"]),
            progress=progress,
        )
        for label, model in models
    ]
    return probe_tasks(sources, tasks, train_set.split, eval_set.split, config, progress).to_json()


def probe_markdown(probe: dict) -> str:
    """One table per task and model: zero-shot, then each k's probe (mean ± sd over repeats)."""
    metrics = ("accuracy@1", "balanced_accuracy", "macro_f1")
    parts = []
    for task, t in probe["tasks"].items():
        parts += [
            f"### {task} ({len(t['classes'])} classes; {t['n_eval']} images of `{probe['eval_split']}`; "
            f"draws from {t['n_train']} images of `{probe['train_split']}`, {probe['repeats']} per k)",
            "",
            "| model | method | " + " | ".join(metrics) + " |",
            "| --- | --- |" + " ---: |" * len(metrics),
        ]
        for model in t["models"]:
            zero = model.get("zero_shot")
            if zero is not None:
                parts.append(f"| {model['label']} | zero-shot | " + " | ".join(f"{zero[m]:.4f}" for m in metrics) + " |")
            for k, stats in model["summary"].items():
                cells = [
                    f"{stats[m]['mean']:.4f}" + ("" if stats[m]["sd"] is None else f" ± {stats[m]['sd']:.4f}") for m in metrics
                ]
                method = f"probe, all {t['n_train']}" if k == "all" else f"probe, {k} per class"
                parts.append(f"| {model['label']} | {method} | " + " | ".join(cells) + " |")
        parts.append("")
    return "\n".join(parts)
