"""Named prompt-template sets (``configs/prompts/*.toml``) and user prompt files.

A set gives every task its templates, optionally per-task templates and per-class prompt lists
(see ``configs/prompts/seed.toml`` for the format). :meth:`PromptSet.for_task` turns it into
what :func:`~medclip_cli.evaluation.zeroshot.build_zero_shot_classifier` takes.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from medclip_cli.config_folders import config_files, find_config
from medclip_cli.data.labels import LabelField
from medclip_cli.evaluation.zeroshot import DEFAULT_TEMPLATE, check_template
from medclip_cli.errors import UsageError
from medclip_cli.files import read_regular

DEFAULT_PROMPT_SET = "seed"
PROMPT_SUFFIXES = (".toml", ".json", ".txt")


@dataclass(frozen=True)
class TaskPrompts:
    """The prompts of one task: templates, and per-class prompt lists that override them."""

    templates: tuple[str, ...] = ()
    classes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class PromptSet:
    """Templates for every task, with per-task and per-class overrides."""

    name: str
    templates: tuple[str, ...] = (DEFAULT_TEMPLATE,)
    tasks: Mapping[str, TaskPrompts] = field(default_factory=dict)
    source: str = ""  # the file it was read from
    description: str = ""
    # Positive/negative prompt pairs of multi-label findings, as read (``[pairs]``; checked and
    # used by evaluation/multilabel.py).
    pairs: Mapping = field(default_factory=dict)

    def for_task(self, task: str, label_field: LabelField) -> dict[str, list[str]]:
        """Prompts of each class of ``label_field``, keyed by its readable name (template
        placeholders still unfilled; ``class_prompts`` fills them)."""
        own = self.tasks.get(task, TaskPrompts())
        templates = list(own.templates or self.templates)
        per_class = {}
        for raw in label_field.classes:
            readable = label_field.readable_name(raw)
            listed = own.classes.get(raw) or own.classes.get(readable)
            per_class[readable] = list(listed) if listed else templates
        return per_class

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "templates": list(self.templates),
            "tasks": {
                t: {"templates": list(p.templates), "classes": {c: list(v) for c, v in p.classes.items()}}
                for t, p in self.tasks.items()
            },
            **({"pairs": dict(self.pairs)} if self.pairs else {}),
        }


def list_prompt_sets() -> list[str]:
    """Names of the prompt sets in ``configs/prompts/`` and the user's config folder."""
    return list(config_files("prompts"))


def load_prompt_set(name_or_path: str | Path | None = None) -> PromptSet:
    """A named set (``configs/prompts/`` or the user's config folder) or a file (.toml, .json, or .txt one template a line)."""
    value = str(name_or_path or DEFAULT_PROMPT_SET)
    path = Path(value).expanduser()
    if path.suffix.lower() in PROMPT_SUFFIXES or path.exists() or "/" in value:
        if not path.exists():  # a pipe or device is refused by name when read
            raise UsageError(f"--prompts {value}: no such prompt file", hint="pass a .toml, .json or .txt file, or a set name")
        return _read_file(path)
    named = find_config("prompts", value)
    if named is None:
        known = list_prompt_sets()
        close = difflib.get_close_matches(value, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UsageError(f"--prompts {value!r}: no such prompt set (known: {', '.join(known) or 'none'})", hint=f"{hint}or pass a file")
    return _read_file(named, name=value)


def _read_file(path: Path, name: str | None = None) -> PromptSet:
    try:
        text = read_regular(path, UsageError, "prompt file", limit=16 << 20).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--prompts {path}: cannot read the prompt file ({exc})") from exc
    suffix = path.suffix.lower()
    if suffix == ".txt":
        raw: object = {"templates": [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]}
    else:
        try:
            raw = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, ValueError) as exc:  # JSONDecodeError and 5,000-digit numbers
            raise UsageError(f"--prompts {path}: not valid {suffix[1:].upper()} ({exc})") from exc
        except RecursionError as exc:
            raise UsageError(f"--prompts {path}: not valid {suffix[1:].upper()} (nested too deeply)") from exc
    if isinstance(raw, list):  # a bare JSON list of templates
        raw = {"templates": raw}
    return _parse(raw, path, name or path.stem)


def _parse(raw: object, path: Path, name: str) -> PromptSet:
    if not isinstance(raw, dict):
        raise UsageError(f"--prompts {path}: expected a table with 'templates' (and optional 'tasks')")
    unknown = sorted(set(raw) - {"templates", "tasks", "description", "pairs"})
    if unknown:
        raise UsageError(f"--prompts {path}: unknown key {unknown[0]!r} (expected templates, tasks, pairs, description)")
    pairs = raw.get("pairs", {})
    if not isinstance(pairs, dict):
        raise UsageError(f"--prompts {path}: 'pairs' must be a table (positive, negative, findings)")
    templates = _templates(raw.get("templates", [DEFAULT_TEMPLATE]), path, "templates")
    tasks_raw = raw.get("tasks", {})
    if not isinstance(tasks_raw, dict):
        raise UsageError(f"--prompts {path}: 'tasks' must be a table of task names")
    tasks = {}
    for task, table in tasks_raw.items():
        where = f"tasks.{task}"
        if not isinstance(table, dict) or set(table) - {"templates", "classes"}:
            raise UsageError(f"--prompts {path}: [{where}] may only hold 'templates' and 'classes'")
        classes = table.get("classes", {})
        if not isinstance(classes, dict):
            raise UsageError(f"--prompts {path}: [{where}.classes] must map class names to prompt lists")
        tasks[task] = TaskPrompts(
            templates=_templates(table["templates"], path, f"{where}.templates") if "templates" in table else (),
            classes={str(c): _prompts(v, path, f"{where}.classes.{c}") for c, v in classes.items()},
        )
    return PromptSet(name, templates, tasks, str(path), str(raw.get("description", "")), pairs)


def _templates(value: object, path: Path, where: str) -> tuple[str, ...]:
    items = _prompts(value, path, where)
    for template in items:
        try:
            check_template(template)
        except UsageError:
            raise UsageError(f"--prompts {path}: {where}: {template!r} has no {{}} placeholder for the class name") from None
    return items


def _prompts(value: object, path: Path, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise UsageError(f"--prompts {path}: {where} must be a non-empty list of strings")
    return tuple(value)
