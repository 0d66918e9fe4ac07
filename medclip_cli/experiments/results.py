"""An experiment's records: what the fine-tuned model saw of each task, ``results.json``, and
the atomic writes of its files."""

from __future__ import annotations

import json
from pathlib import Path

from medclip_cli.atomic import write_text_atomic
from medclip_cli.experiments.config import Experiment


def supervision(experiment: Experiment) -> dict[str, str]:
    """What the fine-tuned model saw of each task in training: ``label-supervised`` for label
    fields shown to it as training text, ``zero-shot`` for label fields it never saw, and
    ``captions`` for retrieval (trained on the training split's captions)."""
    shown = set((experiment.finetune or {}).get("label_text_fields") or [])
    out = {}
    for task in experiment.settings["evaluate"]["tasks"]:
        if experiment.finetune is None:
            out[task] = "zero-shot"
        elif task == "retrieval":
            out[task] = "captions"
        else:
            out[task] = "label-supervised" if task in shown else "zero-shot"
    return out


def results_json(run, command: str) -> dict:
    """``results.json`` of an :class:`~medclip_cli.experiments.runner.ExperimentRun`."""
    return {
        "experiment": run.experiment.name,
        "description": run.experiment.settings["experiment"]["description"],
        "command": command,
        "overrides": run.experiment.overrides,
        "settings": run.experiment.settings,
        "seconds": round(run.seconds, 1),
        "data_root": str(run.data_root),
        "weights": {m.label: m.weights for m in run.evaluation.models},
        "seeds": run.seeds,
        "supervision": supervision(run.experiment),
        "tuned_on": run.experiment.settings["experiment"].get("tuned_on") or None,
        "comparison": run.comparison(),
        "training": _training_json(run.train),
        "evaluation": run.evaluation.to_json(),
        "per_seed": [
            {"seed": r.seed, "training": _training_json(r.train), "evaluation": r.evaluation.to_json(), "findings": r.findings}
            for r in run.seed_runs[1:]
        ],
        "probe": run.probe,
        "findings": run.seed_runs[0].findings,  # the [findings] step: per finding and macro, with intervals
    }


def _training_json(train) -> dict | None:
    if train is None:
        return None
    return {
        "steps": train.steps,
        "epochs": train.epochs_done,
        "best_metric": train.best_metric,
        "best_value": train.best_value,
        "best_epoch": train.best_epoch,
        "history": [r for r in train.history if r.get("type") == "epoch"],
    }


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
