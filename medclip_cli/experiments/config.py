"""Experiments as TOML files in ``configs/experiments/``: parsed, overridden with ``--set``, validated."""

from __future__ import annotations

import copy
import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medclip_cli.data.labels import config_dir
from medclip_cli.errors import UsageError
from medclip_cli.files import read_regular

ALIASES_FILE = "aliases.toml"

#: Sections and keys an experiment may have, with their defaults. ``finetune`` is optional:
#: without it the experiment is a zero-shot baseline. Fine-tuning keys are the engine's
#: ``TrainConfig`` fields and are checked against it when the run starts.
SCHEMA: dict[str, dict[str, Any]] = {
    "experiment": {"description": "", "tests": "", "seed": 0},
    "model": {
        "encoder": None,
        "text_encoder": None,
        "pretrained": "none",
        "text_pretrained": "auto",
        "image_size": None,
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
    },
    "evaluate": {
        "tasks": ["modality", "location_category", "plane", "retrieval"],
        "prompts": "seed",
        "batch_size": 64,
    },
}
OPTIONAL_SECTIONS = {"finetune", "probe"}  # [probe]: see experiments/probe_step.py
#: ``[data]`` keys that are ``load_dataset`` options, passed on to every split the experiment reads.
DATASET_OPTIONS = ("image_column", "caption_column", "label_columns", "split_column")


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
    return config_dir() / "experiments"


def list_experiments() -> list[Experiment]:
    """Every experiment file, sorted by name."""
    return [load_experiment(p.stem) for p in sorted(experiments_dir().glob("*.toml")) if p.name != ALIASES_FILE]


def aliases() -> dict[str, str]:
    path = experiments_dir() / ALIASES_FILE
    if not path.is_file():
        return {}
    return {k: str(v) for k, v in _read_toml(path).items()}


def resolve_names(name: str) -> list[str]:
    """``all``, an alias such as ``best``, or one experiment name."""
    if name == "all":
        return [e.name for e in list_experiments()]
    target = aliases().get(name, name)
    known = [p.stem for p in experiments_dir().glob("*.toml") if p.name != ALIASES_FILE]
    if target not in known:
        close = difflib.get_close_matches(name, known + list(aliases()), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ExperimentConfigError(
            f"unknown experiment {name!r}{hint}", hint="run `medclip reproduce --list` to see them"
        )
    return [target]


def load_experiment(name: str, overrides: list[str] | None = None) -> Experiment:
    path = experiments_dir() / f"{name}.toml"
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
    for key in DATASET_OPTIONS:
        value = settings["data"].get(key)
        names = value if key == "label_columns" and isinstance(value, list) else [value]
        if value is not None and not all(isinstance(v, str) and v for v in names):
            kind = "a list of column names" if key == "label_columns" else "a column name"
            raise ExperimentConfigError(f"{path}: data.{key} must be {kind}, not {value!r}")
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
    if section == "probe":
        if settings.get("probe") is None:
            raise ExperimentConfigError(f"--set {item!r}: this experiment has no [probe] section")
        settings["probe"][name] = parse_value(value)
        return
    if section not in SCHEMA:
        raise ExperimentConfigError(f"--set {item!r}: unknown section {section!r} (known: {', '.join([*SCHEMA, 'finetune'])})")
    if name not in SCHEMA[section]:
        raise ExperimentConfigError(f"--set {item!r}: unknown key {section}.{name} (known: {', '.join(SCHEMA[section])})")
    settings[section][name] = parse_value(value)
