"""Running an experiment: evaluate the starting model, fine-tune, evaluate the result, report."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from medclip_cli.atomic import write_text_atomic
from medclip_cli.errors import DataError, PretrainedUnavailableError
from medclip_cli.experiments.config import Experiment, ExperimentConfigError
from medclip_cli.experiments.probe_step import probe_settings, run_probe_step

OFFLINE_EXPERIMENT = "offline-minilm-lit"
BASELINE, FINETUNED = "baseline", "fine-tuned"


@dataclass
class ExperimentRun:
    """What one experiment produced."""

    experiment: Experiment
    output: Path
    evaluation: object  # engine.evaluate.EvalResult (baseline, and fine-tuned when trained)
    train: object | None  # engine.train.TrainResult
    seconds: float
    data_root: Path
    files: list[Path] = field(default_factory=list)
    probe: dict | None = None  # ProbeResult.to_json() of the [probe] step, when the experiment has one

    def comparison(self) -> list[dict]:
        """Rows of task × metric with the baseline, the fine-tuned value and the difference."""
        models = {m.label: m for m in self.evaluation.models}
        rows = []
        for task in self.evaluation.tasks:
            base = models[BASELINE].tasks[task].metrics
            tuned = models[FINETUNED].tasks[task].metrics if FINETUNED in models else None
            for metric in headline_metrics(models[BASELINE].tasks[task].kind, base):
                b = base.get(metric)
                t = tuned.get(metric) if tuned is not None else None
                diff = t - b if isinstance(t, (int, float)) and isinstance(b, (int, float)) else None
                rows.append({"task": task, "metric": metric, BASELINE: b, FINETUNED: t, "difference": diff})
        return rows


def headline_metrics(kind: str, metrics: dict) -> list[str]:
    if kind == "retrieval":
        return [k for k in metrics if "R@" in k or "median_rank" in k]
    keys = ["accuracy@1", "accuracy@5", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_auroc"]
    return [k for k in keys if metrics.get(k) is not None]


def run_experiment(
    experiment: Experiment,
    output: Path,
    *,
    data: Path | None = None,
    device: str = "auto",
    progress=None,
    train_events=None,
) -> ExperimentRun:
    """Run ``experiment`` into ``output``: checks first (data, splits, weights), then the work."""
    import torch

    from medclip_cli.evaluation.evaluate import EvalConfig, ModelSource, evaluate
    from medclip_cli.models.bundle import load_bundle, save_bundle

    start = time.perf_counter()
    settings = experiment.settings
    data_root, eval_set = check_experiment(experiment, data)
    probe = probe_settings(experiment)
    probe_train = _probe_train_split(experiment, data_root, probe["train_split"]) if probe is not None else None
    seed = int(settings["experiment"]["seed"])
    torch.manual_seed(seed)
    baseline = _build_start_model(experiment)
    output.mkdir(parents=True, exist_ok=True)
    start_dir = output / "start-model"
    sources = [ModelSource(BASELINE, lambda: baseline)]
    train_result = None
    if experiment.finetune is not None:
        save_bundle(baseline, start_dir, provenance={"source": f"medclip reproduce {experiment.name}: starting model"})
        del baseline
        train_result = _finetune(experiment, data_root, start_dir, output / "finetune", device, progress, train_events)
        tuned = train_result.best or train_result.last
        sources = [ModelSource(BASELINE, lambda: load_bundle(start_dir)), ModelSource(FINETUNED, lambda: load_bundle(tuned))]
    evaluation = evaluate(
        sources,
        eval_set,
        EvalConfig(
            tasks=list(settings["evaluate"]["tasks"]),
            prompts=settings["evaluate"]["prompts"],
            batch_size=int(settings["evaluate"]["batch_size"]),
            device=device,
            seed=seed,
            dataset_options=experiment.dataset_options,
        ),
        progress,
    )
    probe_result = None
    if probe is not None:
        models = [(source.label, source.load()) for source in sources]
        probe_result = run_probe_step(experiment, probe, probe_train, eval_set, models, progress)
    return ExperimentRun(
        experiment, output, evaluation, train_result, time.perf_counter() - start, data_root, probe=probe_result
    )


def check_experiment(experiment: Experiment, data: Path | None = None):
    """Everything that can be checked before any work: the data's splits, every setting's type,
    the prompt sets, the tasks and the fine-tuning settings. Returns (data root, evaluation split)."""
    data_root = _data_root(experiment, data)
    eval_set = _load_split(experiment, data_root, "eval_split")
    if experiment.finetune is not None:
        _load_split(experiment, data_root, "train_split")
        if str(experiment.settings["data"]["val_split"]).lower() != "none":
            _load_split(experiment, data_root, "val_split")
    _check_settings(experiment, eval_set, data_root)
    return data_root, eval_set


def _data_root(experiment: Experiment, data: Path | None) -> Path:
    from medclip_cli.data.home import default_data_root

    configured = experiment.settings["data"].get("path")
    if data is not None:
        return Path(data)
    if configured:
        return Path(configured)
    return default_data_root()


def _load_split(experiment: Experiment, root: Path, key: str):
    from medclip_cli.data import load_dataset

    split = experiment.settings["data"][key]
    try:
        return load_dataset(root, split, experiment.settings["data"].get("dataset"), **experiment.dataset_options)
    except DataError as exc:
        if "has no split" in exc.message:
            raise ExperimentConfigError(
                f"{exc.message}; experiment {experiment.name!r} reads it as data.{key}",
                hint=f"pick another with --set data.{key}=NAME",
            ) from exc
        raise


def _probe_train_split(experiment: Experiment, root: Path, split: str):
    from medclip_cli.data import load_dataset

    try:
        return load_dataset(root, split, experiment.settings["data"].get("dataset"), **experiment.dataset_options)
    except DataError as exc:
        if "has no split" in exc.message:
            raise ExperimentConfigError(
                f"{exc.message}; experiment {experiment.name!r} draws its probe's images from it (probe.train_split)",
                hint="pick another with --set probe.train_split=NAME",
            ) from exc
        raise


def _build_start_model(experiment: Experiment):
    from medclip_cli.models import resolve_model

    model = experiment.settings["model"]
    try:
        return resolve_model(
            None,
            model["encoder"],
            model.get("text_encoder"),
            model.get("pretrained"),
            model.get("text_pretrained", "auto"),
            model.get("image_size"),
        )
    except PretrainedUnavailableError as exc:
        raise PretrainedUnavailableError(
            f"experiment {experiment.name!r} needs {exc.message}",
            hint=f"connect once to cache them, or run the offline experiment: medclip reproduce --experiment {OFFLINE_EXPERIMENT}",
        ) from exc


def _finetune(experiment: Experiment, data_root: Path, start_dir: Path, output: Path, device, progress, events):
    from medclip_cli.training.train import train

    return train(_train_config(experiment, data_root, start_dir, output, device), progress, events)


def _train_config(experiment: Experiment, data_root: Path, start_dir: Path, output: Path, device):
    from medclip_cli.training.config import TrainConfig

    settings = experiment.settings
    check_finetune_keys(experiment)
    val_split = settings["data"]["val_split"]
    finetune = dict(experiment.finetune)
    if finetune.get("label_text_fields") and "label_text_prompts" not in finetune:
        # Train on the very prompts the evaluation scores with, unless the config says otherwise.
        finetune["label_text_prompts"] = settings["evaluate"]["prompts"]
    config = TrainConfig(
        output=output,
        data=data_root,
        model_dir=start_dir,
        dataset_format=settings["data"].get("dataset"),
        dataset_options=experiment.dataset_options,
        split=settings["data"]["train_split"],
        val_split=None if str(val_split).lower() == "none" else val_split,
        device=device,
        seed=int(settings["experiment"]["seed"]),
        **finetune,
    )
    return config


def _check_settings(experiment: Experiment, eval_set, data_root: Path) -> None:
    """Types, prompt sets, tasks and the fine-tuning settings, checked before any work."""
    from dataclasses import fields

    from medclip_cli.evaluation.evaluate import resolve_tasks
    from medclip_cli.evaluation.prompts import load_prompt_set
    from medclip_cli.training.config import TrainConfig, check_config

    settings = experiment.settings
    tasks = settings["evaluate"]["tasks"]
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        raise ExperimentConfigError(f"{experiment.path}: evaluate.tasks must be a list of names, not {tasks!r}")
    try:
        int(settings["experiment"]["seed"]), int(settings["evaluate"]["batch_size"])
    except (TypeError, ValueError) as exc:
        raise ExperimentConfigError(f"{experiment.path}: experiment.seed and evaluate.batch_size must be whole numbers") from exc
    load_prompt_set(settings["evaluate"]["prompts"])
    resolve_tasks(eval_set, list(tasks))
    if experiment.finetune is None:
        return
    check_finetune_keys(experiment)
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    for key, value in experiment.finetune.items():
        default = defaults.get(key)
        if isinstance(default, (list, tuple)) or key in ("val_tasks", "label_text_fields"):
            if not isinstance(value, (list, tuple)):
                raise ExperimentConfigError(f"{experiment.path}: finetune.{key} must be a list, not {value!r}")
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise ExperimentConfigError(f"{experiment.path}: finetune.{key} must be true or false, not {value!r}")
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ExperimentConfigError(f"{experiment.path}: finetune.{key} must be a number, not {value!r}")
    try:
        config = _train_config(experiment, data_root, Path("unused"), Path("unused"), "cpu")
    except TypeError as exc:
        raise ExperimentConfigError(f"{experiment.path}: [finetune]: {exc}") from exc
    check_config(config)
    if config.label_text_prompts:
        load_prompt_set(config.label_text_prompts)


#: TrainConfig fields the experiment sets itself (model, data, device): not ``[finetune]`` keys.
_RESERVED = {"output", "data", "model_dir", "encoder", "text_encoder", "pretrained", "text_pretrained",
             "image_size", "dataset_format", "dataset_options", "split", "val_split", "device", "resume", "seed"}


def check_finetune_keys(experiment: Experiment) -> None:
    """The ``[finetune]`` keys must be fields of the training engine's ``TrainConfig``."""
    from dataclasses import fields

    from medclip_cli.training.config import TrainConfig

    allowed = {f.name for f in fields(TrainConfig)} - _RESERVED
    for key in experiment.finetune or {}:
        if key not in allowed:
            raise ExperimentConfigError(
                f"{experiment.path}: unknown key finetune.{key} (known: {', '.join(sorted(allowed))})"
            )


def results_json(run: ExperimentRun, command: str) -> dict:
    return {
        "experiment": run.experiment.name,
        "description": run.experiment.settings["experiment"]["description"],
        "command": command,
        "overrides": run.experiment.overrides,
        "settings": run.experiment.settings,
        "seconds": round(run.seconds, 1),
        "data_root": str(run.data_root),
        "comparison": run.comparison(),
        "training": None
        if run.train is None
        else {
            "steps": run.train.steps,
            "epochs": run.train.epochs_done,
            "best_metric": run.train.best_metric,
            "best_value": run.train.best_value,
            "best_epoch": run.train.best_epoch,
        },
        "evaluation": run.evaluation.to_json(),
        "probe": run.probe,
    }


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)


def needs_network(experiment: Experiment) -> bool:
    """Whether the experiment's weights must come from a hub (not shipped, not a local path)."""
    from medclip_cli.models.factory import normalize_pretrained

    model = experiment.settings["model"]
    pretrained = normalize_pretrained(model.get("pretrained"))
    if pretrained is not None and not Path(pretrained).exists():
        return True
    text = model.get("text_encoder") or ""
    if text.startswith("hf:") and not Path(text[3:]).is_dir():
        return True
    text_tag = normalize_pretrained(model.get("text_pretrained"))
    return text == "clip-text" and text_tag not in (None, "auto")
