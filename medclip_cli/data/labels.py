"""Label fields and their readable class names, read from editable TOML files in ``configs/labels/``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from medclip_cli.errors import DataError
from medclip_cli.files import read_regular


@dataclass(frozen=True)
class LabelField:
    """One label of a data set (e.g. ``modality``) with its classes and their prompt names."""

    name: str
    classes: tuple[str, ...]  # raw values, in a stable order
    readable: Mapping[str, str]  # raw value -> words for prompt templates
    aliases: Mapping[str, str] = field(default_factory=dict)  # other raw spelling -> raw value
    include_unlisted: bool = False
    description: str = ""

    def canonical(self, value: object) -> str | None:
        """The class a raw value belongs to, or None when it is not one of this field's classes."""
        if value is None:
            return None
        text = str(value).strip()
        if not text:
            return None
        text = self.aliases.get(text, text)
        if text in self.readable or self.include_unlisted:
            return text
        return None

    def readable_name(self, value: str) -> str:
        return self.readable.get(value, value.lower())

    def with_classes(self, classes: list[str]) -> "LabelField":
        """This field with its class list set to the classes actually seen (unlisted ones added)."""
        listed = [c for c in self.readable if c in classes]
        extra = sorted(c for c in classes if c not in self.readable)
        return LabelField(
            self.name,
            tuple(listed + extra),
            {**self.readable, **{c: c.lower() for c in extra}},
            self.aliases,
            self.include_unlisted,
            self.description,
        )


def named_label_fields(name: str) -> dict[str, LabelField]:
    """The label file ``name`` from the user's config folder or the built-in ``configs/labels/``."""
    from medclip_cli.config_folders import config_dirs, find_config

    path = find_config("labels", name)
    if path is None:
        where = " or ".join(str(d / "labels") for d in config_dirs())
        raise DataError(f"no label names file {name}.toml in {where}", hint="reinstall medclip, or put one in your config folder")
    return read_label_fields(path)


def read_label_fields(path: Path) -> dict[str, LabelField]:
    """Parse a label TOML file (see ``configs/labels/medpix2.toml`` for the format)."""
    try:
        raw = tomllib.loads(read_regular(path, DataError, "label names file", limit=16 << 20).decode("utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: label names file not found") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid TOML ({exc})") from exc
    fields = {}
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise DataError(f"{path}: [{name}] must be a table")
        classes = table.get("classes", {})
        aliases = table.get("aliases", {})
        if not isinstance(classes, dict) or not all(isinstance(v, str) for v in classes.values()):
            raise DataError(f"{path}: [{name}.classes] must map raw values to readable names")
        if not isinstance(aliases, dict):
            raise DataError(f"{path}: [{name}.aliases] must map other spellings to raw values")
        fields[name] = LabelField(
            name=name,
            classes=tuple(classes),
            readable=dict(classes),
            aliases={str(k): str(v) for k, v in aliases.items()},
            include_unlisted=bool(table.get("include_unlisted", False)),
            description=str(table.get("description", "")),
        )
    return fields
