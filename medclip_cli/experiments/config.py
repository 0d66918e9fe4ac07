"""Experiments as TOML files in ``configs/experiments/`` (and the user's config folder): parsed,
overridden with ``--set``, validated. A user's file wins over a built-in one of the same name."""

from __future__ import annotations

import copy
import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medclip_cli.config_folders import builtin_config_dir, config_dirs, config_files, find_config
from medclip_cli.errors import UsageError
from medclip_cli.files import read_regular

ALIASES_FILE = "aliases.toml"

#: Sections and keys an experiment may have, with their defaults. ``finetune`` is optional:
#: without it the experiment is a zero-shot baseline. Fine-tuning keys are the engine's
#: ``TrainConfig`` fields and are checked against it when the run starts.
SCHEMA: dict[str, dict[str, Any]] = {
    # seeds: fine-tune once per seed (the report gives each and their mean ± sd); None: [seed].
    # tuned_on: the split the hyperparameters were chosen on, stated next to the results.
    "experiment": {"description": "", "tests": "", "seed": 0, "seeds": None, "tuned_on": None},
    "model": {
        "encoder": None,
        "text_encoder": None,
        "pretrained": "none",
        "text_pretrained": "auto",
        "image_size": None,
        # Other models evaluated on the same images beside it (names, hub ids or folders, as
        # ``--model`` takes them): e.g. the medical CLIPs in compare-medical-clips.
        "compare": [],
    },
    "data": {
        "path": None,  # None: the downloaded MedPix 2.0 copy
        "dataset": None,
        "train_split": "train",
        "val_split": "dev",
        "eval_split": "test",
        # CSV/JSONL manifests: which columns hold what (None: the usual names), as in
        # --image-column, --caption-column, --label-column and --split-column.
        "image_column": None,
        "caption_column": None,
        "label_columns": None,
        "split_column": None,
        # Multi-label findings: one column per finding (CheXpert 1/0/-1/blank), as --finding-columns,
        # and how their values read (chexpert or binary; None: chexpert). [findings]: findings_step.py.
        "finding_columns": None,
        "findings_convention": None,
    },
    "evaluate": {
        "tasks": ["modality", "location_category", "plane", "retrieval"],
        "prompts": "seed",
        "batch_size": 64,
        "bootstrap": 1000,  # resamples for each metric's 95 % interval; 0: none
        "calibrate_on": None,  # a split to fit one temperature per model and task on
    },
}
OPTIONAL_SECTIONS = {"finetune", "probe", "findings"}  # [probe], [findings]: experiments/probe_step.py, findings_step.py
#: ``[data]`` keys that are ``load_dataset`` options, passed on to every split the experiment reads.
DATASET_OPTIONS = ("image_column", "caption_column", "label_columns", "split_column", "finding_columns", "findings_convention")


class ExperimentConfigError(UsageError):
    """An experiment file or ``--set`` override that is not valid."""


@dataclass
class Experiment:
    """One experiment: its name, the file it came from, and its resolved settings."""

    name: str
    path: Path
    settings: dict[str, dict[str, Any]]
    overrides: list[str] = field(default_factory=list)

    @property
    def finetune(self) -> dict[str, Any] | None:
        return self.settings.get("finetune")

    def get(self, dotted: str) -> Any:
        section, _, key = dotted.partition(".")
        return self.settings.get(section, {}).get(key)

    @property
    def dataset_options(self) -> dict[str, Any]:
        """The ``[data]`` options ``load_dataset`` takes (column names), those that are set."""
        data = self.settings["data"]
        return {k: data[k] for k in DATASET_OPTIONS if data.get(k) is not None}

    @property
    def encoders(self) -> str:
        model = self.settings["model"]
        text = model.get("text_encoder")
        return model["encoder"] + (f" + {text}" if text else "")

    @property
    def pretrained_summary(self) -> str:
        model = self.settings["model"]
        return str(model.get("pretrained") or "none")


def experiments_dir() -> Path:
    """The built-in experiments (the user's own are found through :mod:`medclip_cli.config_folders`)."""
    return builtin_config_dir() / "experiments"


def _experiment_files() -> dict[str, Path]:
    return {name: path for name, path in config_files("experiments").items() if f"{name}.toml" != ALIASES_FILE}


def list_experiments() -> list[Experiment]:
    """Every experiment, built-in and the user's, sorted by name."""
    return [load_experiment(name) for name in _experiment_files()]


def aliases() -> dict[str, str | list[str]]:
    """Alias -> experiment name, or a list of names run together (one summary over them), from the
    built-in aliases file and the user's (theirs win)."""
    merged: dict[str, str | list[str]] = {}
    for folder in reversed(config_dirs()):
        path = folder / "experiments" / ALIASES_FILE
        if path.is_file():
            merged.update(
                {k: [str(x) for x in v] if isinstance(v, list) else str(v) for k, v in _read_toml(path).items()}
            )
    return merged


def resolve_names(name: str) -> list[str]:
    """``all``, an alias such as ``best`` (one or several experiments), or one experiment name."""
    if name == "all":
        return [e.name for e in list_experiments()]
    target = aliases().get(name, name)
    targets = target if isinstance(target, list) else [target]
    known = list(_experiment_files())
    for wanted in targets:
        if wanted not in known:
            shown = name if wanted == target else f"{wanted} (in alias {name!r})"
            close = difflib.get_close_matches(wanted, known + list(aliases()), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ExperimentConfigError(
                f"unknown experiment {shown!r}{hint}", hint="run `medclip reproduce --list` to see them"
            )
    return targets


def load_experiment(name: str, overrides: list[str] | None = None) -> Experiment:
    path = find_config("experiments", name) or experiments_dir() / f"{name}.toml"
    raw = _read_toml(path)
    settings = _validate(raw, path)
    overrides = list(overrides or [])
    for item in overrides:
        _apply_override(settings, item)
    _check_required(settings, path)
    return Experiment(name, path, settings, overrides)


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(read_regular(path, ExperimentConfigError, "experiment file", limit=16 << 20).decode("utf-8"))
    except FileNotFoundError:
        raise ExperimentConfigError(f"{path}: no such experiment file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ExperimentConfigError(f"{path}: not valid TOML ({exc})") from exc


def _validate(raw: dict, path: Path) -> dict[str, dict[str, Any]]:
    settings = copy.deepcopy(SCHEMA)
    for section, values in raw.items():
        if section not in SCHEMA and section not in OPTIONAL_SECTIONS:
            known = ", ".join([*SCHEMA, *OPTIONAL_SECTIONS])
            raise ExperimentConfigError(f"{path}: unknown section [{section}] (known: {known})")
        if not isinstance(values, dict):
            raise ExperimentConfigError(f"{path}: [{section}] must be a table")
        if section in OPTIONAL_SECTIONS:
            settings[section] = dict(values)
            continue
        for key, value in values.items():
            if key not in SCHEMA[section]:
                raise ExperimentConfigError(
                    f"{path}: unknown key {section}.{key} (known: {', '.join(SCHEMA[section])})"
                )
            settings[section][key] = value
    return settings


def _check_required(settings: dict, path: Path) -> None:
    if not settings["model"].get("encoder"):
        raise ExperimentConfigError(f"{path}: model.encoder is required")
    tasks = settings["evaluate"].get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise ExperimentConfigError(f"{path}: evaluate.tasks must be a non-empty list of task names")
    convention = settings["data"].get("findings_convention")
    if convention is not None and convention not in ("chexpert", "binary"):
        raise ExperimentConfigError(f"{path}: data.findings_convention must be chexpert or binary, not {convention!r}")
    for key in DATASET_OPTIONS[:-1]:  # the column options (the last is findings_convention)
        value = settings["data"].get(key)
        lists = ("label_columns", "finding_columns")
        names = value if key in lists and isinstance(value, list) else [value]
        if value is not None and not all(isinstance(v, str) and v for v in names):
            kind = "a list of column names" if key in lists else "a column name"
            raise ExperimentConfigError(f"{path}: data.{key} must be {kind}, not {value!r}")
    seeds = settings["experiment"].get("seeds")
    if seeds is not None:
        if not isinstance(seeds, list) or not seeds or not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds):
            raise ExperimentConfigError(f"{path}: experiment.seeds must be a non-empty list of integers, not {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ExperimentConfigError(f"{path}: experiment.seeds repeats a seed ({seeds!r})")
    boot = settings["evaluate"].get("bootstrap")
    if not isinstance(boot, int) or isinstance(boot, bool) or boot < 0:
        raise ExperimentConfigError(f"{path}: evaluate.bootstrap must be a whole number of resamples (0: none), not {boot!r}")
    ft = settings.get("finetune")
    if ft is not None and "loss_weight" in ft:
        weight = ft["loss_weight"]
        if not isinstance(weight, (int, float)) or not 0.0 <= float(weight) <= 1.0:
            raise ExperimentConfigError(f"{path}: finetune.loss_weight must be in [0, 1], not {weight!r}")


def parse_value(text: str) -> Any:
    """A ``--set`` value as a TOML literal (``3``, ``0.5``, ``true``, ``["a", "b"]``), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _apply_override(settings: dict, item: str) -> None:
    key, sep, value = item.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not name:
        raise ExperimentConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. finetune.epochs=1")
    if section == "finetune":
        if settings.get("finetune") is None:
            raise ExperimentConfigError(
                f"--set {item!r}: this experiment has no fine-tuning (a zero-shot baseline)"
            )
        settings["finetune"][name] = parse_value(value)
        return
    if section in ("probe", "findings"):
        if settings.get(section) is None:
            raise ExperimentConfigError(f"--set {item!r}: this experiment has no [{section}] section")
        settings[section][name] = parse_value(value)
        return
    if section not in SCHEMA:
        raise ExperimentConfigError(f"--set {item!r}: unknown section {section!r} (known: {', '.join([*SCHEMA, 'finetune'])})")
    if name not in SCHEMA[section]:
        raise ExperimentConfigError(f"--set {item!r}: unknown key {section}.{name} (known: {', '.join(SCHEMA[section])})")
    settings[section][name] = parse_value(value)
