"""Running an experiment: evaluate the starting model, fine-tune, evaluate the result, report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from medclip_cli.errors import DataError, OutputError, PretrainedUnavailableError
from medclip_cli.experiments.config import Experiment, ExperimentConfigError
from medclip_cli.experiments.results import supervision
from medclip_cli.experiments.findings_step import check_findings, run_findings_step
from medclip_cli.experiments.probe_step import probe_settings, run_probe_step

OFFLINE_EXPERIMENT = "offline-minilm-lit"
BASELINE, FINETUNED = "baseline", "fine-tuned"


@dataclass
class SeedRun:
    """One seed of an experiment: its evaluation (baseline, and fine-tuned when trained)."""

    seed: int
    output: Path
    evaluation: object  # evaluation.evaluate.EvalResult
    train: object | None  # training TrainResult
    probe: dict | None = None  # ProbeResult.to_json() of the [probe] step (first seed only)
    findings: dict | None = None  # the [findings] step (findings_step.run_findings_step)


@dataclass
class ExperimentRun:
    """What one experiment produced: one :class:`SeedRun` per seed."""

    experiment: Experiment
    output: Path
    seed_runs: list[SeedRun]
    seconds: float
    data_root: Path
    files: list[Path] = field(default_factory=list)
    probe: dict | None = None  # ProbeResult.to_json() of the [probe] step, when the experiment has one

    @property
    def evaluation(self):
        """The first seed's evaluation (the data set, prompts and versions are the same for all)."""
        return self.seed_runs[0].evaluation

    @property
    def train(self):
        return self.seed_runs[0].train

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.seed_runs]

    def comparison(self) -> list[dict]:
        """Rows of task × metric: baseline, fine-tuned and difference (means over the seeds, with
        their standard deviations when there are several), and each seed's values with intervals."""
        return comparison_rows(self.experiment, self.seed_runs)


def comparison_rows(experiment: Experiment, seed_runs: list[SeedRun]) -> list[dict]:
    from medclip_cli.experiments.seeds import seed_rows

    return seed_rows(seed_runs, supervision(experiment), headline_metrics, (BASELINE, FINETUNED))


def seeds_of(experiment: Experiment) -> list[int]:
    """``[experiment] seeds`` when given, else the one ``[experiment] seed``."""
    seeds = experiment.settings["experiment"].get("seeds")
    if seeds:
        return [int(s) for s in seeds]
    return [int(experiment.settings["experiment"]["seed"])]


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
    resume: bool = False,
) -> ExperimentRun:
    """Run ``experiment`` into ``output`` once per seed: checks first (data, splits, weights,
    earlier fine-tunes), then the work.

    With ``resume``, an interrupted fine-tune in ``<seed folder>/finetune`` continues from its last
    checkpoint (the starting model is read back from ``start-model``, so no download is needed
    again), and the experiment is finished as an uninterrupted run would have finished it.
    """
    start = time.perf_counter()
    settings = experiment.settings
    data_root, eval_set = check_experiment(experiment, data)
    probe = probe_settings(experiment)
    probe_train = None
    if probe is not None:
        role = "draws its probe's images from it (probe.train_split)"
        probe_train = _load_split_named(experiment, data_root, probe["train_split"], "probe.train_split", role)
    calibration = None
    if settings["evaluate"].get("calibrate_on"):
        calibration = _load_split_named(experiment, data_root, settings["evaluate"]["calibrate_on"], "evaluate.calibrate_on")
    _compared_models(experiment)  # model.compare: fetched (or found offline) before any work
    seeds = seeds_of(experiment)
    # One seed keeps the flat layout; several get a folder each.
    folders = {seed: output if len(seeds) == 1 else output / f"seed-{seed}" for seed in seeds}
    resuming = {seed: _resume_plan(experiment, folder, resume) for seed, folder in folders.items()}
    output.mkdir(parents=True, exist_ok=True)
    seed_runs = []
    for seed in seeds:
        folder = folders[seed]
        if progress is not None and len(seeds) > 1:
            progress.log(f"seed {seed} ({len(seed_runs) + 1} of {len(seeds)})")
        # The [probe] step runs on the first seed's models.
        seed_probe = probe if not seed_runs else None
        seed_runs.append(
            _run_seed(
                experiment, seed, folder, data_root, eval_set, calibration, seed_probe, probe_train, device, progress,
                train_events, resuming[seed],
            )
        )
    run = ExperimentRun(experiment, output, seed_runs, time.perf_counter() - start, data_root)
    run.probe = seed_runs[0].probe
    return run


def _resume_plan(experiment: Experiment, folder: Path, resume: bool) -> bool:
    """Whether the fine-tune in ``folder`` continues from a checkpoint; an earlier or interrupted
    fine-tune there without ``resume`` (or one with nothing to resume) is refused before any work."""
    from medclip_cli.training.checkpoint import find_checkpoint

    tune_dir = folder / "finetune"
    resuming = resume and experiment.finetune is not None and find_checkpoint(tune_dir) is not None
    if experiment.finetune is not None and not resuming and tune_dir.is_dir() and any(tune_dir.iterdir()):
        if resume:
            raise OutputError(
                f"{tune_dir}: nothing to resume (the fine-tune stopped before its first checkpoint)",
                hint=f"remove {tune_dir} to start it again, or choose another --output",
            )
        raise OutputError(
            f"{tune_dir}: holds an earlier or interrupted fine-tune of {experiment.name}",
            hint="pass --resume to continue it, or choose another --output",
        )
    return resuming


def _run_seed(
    experiment, seed, output, data_root, eval_set, calibration, probe, probe_train, device, progress, train_events, resuming
) -> SeedRun:
    import torch

    from medclip_cli.evaluation.evaluate import EvalConfig, ModelSource, evaluate
    from medclip_cli.models.bundle import CONFIG_NAME, load_bundle, save_bundle
    from medclip_cli.models.weights import WEIGHTS_NAME
    from medclip_cli.progress import loading_model

    settings = experiment.settings
    start_dir, tune_dir = output / "start-model", output / "finetune"
    torch.manual_seed(seed)
    saved_start = (start_dir / CONFIG_NAME).is_file() and (start_dir / WEIGHTS_NAME).is_file()
    with loading_model(progress, BASELINE):  # a download or big weights: seconds before the first stage
        if resuming and saved_start:
            baseline = load_bundle(start_dir)  # the very model the interrupted run started from
        else:
            baseline = _build_start_model(experiment)
    compare = _compared_models(experiment)
    output.mkdir(parents=True, exist_ok=True)
    sources = [ModelSource(BASELINE, lambda: baseline)]
    train_result = None
    if experiment.finetune is not None:
        if not (resuming and saved_start):
            save_bundle(baseline, start_dir, provenance={"source": f"medclip reproduce {experiment.name}: starting model"})
        del baseline
        train_result = _finetune(experiment, seed, data_root, start_dir, tune_dir, device, progress, train_events, resuming)
        tuned = train_result.best or train_result.last
        sources = [
            ModelSource(BASELINE, lambda: load_bundle(start_dir)),  # named by its tags, as built
            ModelSource(FINETUNED, lambda: load_bundle(tuned), bundle=tuned),
        ]
    sources += compare
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
            bootstrap=int(settings["evaluate"]["bootstrap"]),
        ),
        progress,
        calibration=calibration,
    )
    probe_result = None
    if probe is not None:
        models = []
        for source in sources:
            with loading_model(progress, f"{source.label} for the probes"):
                models.append((source.label, source.load()))
        probe_result = run_probe_step(experiment, probe, probe_train, eval_set, models, progress)
    findings = run_findings_step(experiment, sources, eval_set, data_root, device, seed, progress)
    return SeedRun(seed, output, evaluation, train_result, probe_result, findings)


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
    check_findings(experiment, data_root, eval_set)
    return data_root, eval_set


def _data_root(experiment: Experiment, data: Path | None) -> Path:
    from medclip_cli.data.home import default_data_root

    configured = experiment.settings["data"].get("path")
    if data is not None:
        return Path(data)
    if configured:
        return Path(configured)
    return default_data_root(experiment.settings["data"].get("dataset"))


def _load_split(experiment: Experiment, root: Path, key: str):
    return _load_split_named(experiment, root, experiment.settings["data"][key], f"data.{key}")


def _load_split_named(experiment: Experiment, root: Path, split: str, key: str, role: str | None = None):
    """The split the setting ``key`` names; a split the data set lacks is refused naming that setting."""
    from medclip_cli.data import load_dataset

    try:
        return load_dataset(root, split, experiment.settings["data"].get("dataset"), **experiment.dataset_options)
    except DataError as exc:
        if "has no split" in exc.message:
            raise ExperimentConfigError(
                f"{exc.message}; experiment {experiment.name!r} {role or f'reads it as {key}'}",
                hint=f"pick another with --set {key}=NAME",
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
        offline = f"run the offline experiment: medclip reproduce --experiment {OFFLINE_EXPERIMENT}"
        fetch = exc.hint if "medclip weights fetch" in (exc.hint or "") else "connect once to cache them"
        raise PretrainedUnavailableError(
            f"experiment {experiment.name!r} needs {exc.message}", hint=f"{fetch}, or {offline}"
        ) from exc


def _compared_models(experiment: Experiment) -> list:
    """Sources for ``model.compare``; hub models are fetched (or found offline) now, before any
    work, so a missing one stops the run at once with the command that fetches it."""
    from medclip_cli.evaluation.evaluate import ModelSource
    from medclip_cli.models.sources import ensure_local, open_model

    refs = experiment.settings["model"].get("compare") or []
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise ExperimentConfigError(f"{experiment.path}: model.compare must be a list of model names")
    try:
        for ref in refs:
            ensure_local(ref)
    except PretrainedUnavailableError as exc:
        raise PretrainedUnavailableError(f"experiment {experiment.name!r}: {exc.message}", hint=exc.hint) from exc
    return [ModelSource(ref, lambda ref=ref: open_model(ref)) for ref in refs]


def _finetune(experiment: Experiment, seed: int, data_root: Path, start_dir: Path, output: Path, device, progress, events, resume=False):
    from medclip_cli.training.train import train

    return train(_train_config(experiment, seed, data_root, start_dir, output, device, resume), progress, events)


def _train_config(experiment: Experiment, seed: int, data_root: Path, start_dir: Path, output: Path, device, resume=False):
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
        seed=seed,
        resume=resume,
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
        seeds_of(experiment), int(settings["evaluate"]["batch_size"])
    except (TypeError, ValueError) as exc:
        raise ExperimentConfigError(
            f"{experiment.path}: experiment.seed(s) and evaluate.batch_size must be whole numbers"
        ) from exc
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
        config = _train_config(experiment, seeds_of(experiment)[0], data_root, Path("unused"), Path("unused"), "cpu")
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
