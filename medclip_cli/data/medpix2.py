"""The MedPix 2.0 layout as published (``Descriptions.json``, ``splitted_dataset/``, ``images/``)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from medclip_cli.data.dataset import Dataset, Sample
from medclip_cli.data.labels import named_label_fields
from medclip_cli.data.links import bare_name_problem, broken_link_reason
from medclip_cli.errors import DataError
from medclip_cli.files import open_regular, read_regular
from medclip_cli.data.manifest_read import MAX_MANIFEST_BYTES

FOLDER_NAME = "MedPix-2-0"
SPLIT_DIR = "splitted_dataset"
ALL_SPLIT = "all"  # every record of Descriptions.json


def find_root(path: Path) -> Path | None:
    """The MedPix 2.0 folder at ``path`` or directly inside it, or None."""
    for candidate in (path, path / FOLDER_NAME):
        if (candidate / "Descriptions.json").is_file() or (candidate / SPLIT_DIR).is_dir():
            return candidate
    return None


def detect(path: Path) -> bool:
    return path.is_dir() and find_root(path) is not None


def splits(path: Path) -> list[str]:
    root = _root(path)
    found = sorted(p.stem.removeprefix("descriptions_") for p in (root / SPLIT_DIR).glob("descriptions_*.jsonl"))
    order = {"train": 0, "dev": 1, "test": 2}
    found.sort(key=lambda s: (order.get(s, 3), s))
    return found + ([ALL_SPLIT] if (root / "Descriptions.json").is_file() else [])


def _root(path: Path) -> Path:
    root = find_root(path)
    if root is None:
        raise DataError(
            f"{path}: not a MedPix 2.0 folder (no Descriptions.json or {SPLIT_DIR}/)",
            hint="point --data at the MedPix-2-0 folder, or run `medclip data download medpix2`",
        )
    return root


def _records(root: Path, split: str) -> tuple[Path, list[dict]]:
    if split == ALL_SPLIT:
        path = root / "Descriptions.json"
        if not path.is_file():
            raise DataError(f"{path}: missing", hint="the MedPix 2.0 layout needs Descriptions.json for split 'all'")
        try:
            data = json.loads(read_regular(path, DataError, "data-set file", limit=MAX_MANIFEST_BYTES).decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # also 5,000-digit numbers and too deep nesting
            raise DataError(f"{path}: not valid JSON ({_json_problem(exc)})") from exc
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of records")
        return path, data
    path = root / SPLIT_DIR / f"descriptions_{split}.jsonl"
    if not path.is_file():
        available = ", ".join(splits(root)) or "none"
        raise DataError(f"{root}: has no split {split!r} (available: {available})", hint="choose another split")
    records = []
    with io.TextIOWrapper(open_regular(path, DataError, "data-set file"), encoding="utf-8", errors="strict") as fh:
        try:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except (ValueError, RecursionError) as exc:
                    raise DataError(f"{path}:{lineno}: malformed JSON line ({_json_problem(exc)})") from exc
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if not records:
        raise DataError(f"{path}: split {split!r} is empty")
    return path, records


def _json_problem(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).split(":")[0]


def load(path: Path, split: str = "train") -> Dataset:
    root = _root(path)
    source, records = _records(root, split)
    fields = named_label_fields("medpix2")
    samples, problems, seen = [], [], set()
    # The name is judged, not where a link resolves: DataLad/git-annex images are links into a store.
    images_dir = Path(os.path.normpath((root / "images").absolute()))
    for index, record in enumerate(records, start=1):
        where = f"{source.name} record {index}"
        if not isinstance(record, dict) or not isinstance(record.get("image"), str):
            problems.append(f"{where}: no 'image' name; skipped")
            continue
        name = record["image"]
        bad_name = bare_name_problem(name)
        if bad_name is not None:
            problems.append(f"{where}: image name {name!r} {bad_name}; skipped")
            continue
        image = images_dir / f"{name}.png"
        broken = broken_link_reason(image)
        if broken is not None:
            problems.append(f"{where}: {broken}")
            continue
        if name in seen:
            problems.append(f"{where}: duplicate image {name!r}; skipped")
            continue
        seen.add(name)
        description = record.get("Description") or {}
        if not isinstance(description, dict):
            description = {}
        caption = description.get("Caption")
        raw = {
            "modality": record.get("Type"),
            "modality_detail": description.get("Modality"),
            "plane": description.get("Plane"),
            "location": record.get("Location"),
            "location_category": record.get("Location Category"),
            "sex": description.get("Sex"),
        }
        labels = {}
        for field_name, value in raw.items():
            value = fields[field_name].canonical(value) if field_name in fields else value
            if value is not None:
                labels[field_name] = value
        samples.append(
            Sample(id=name, image=image, caption=caption.strip() if isinstance(caption, str) else None, labels=labels)
        )
    seen_classes = {name: sorted({s.labels[name] for s in samples if name in s.labels}) for name in fields}
    fields = {name: f.with_classes(seen_classes[name]) if f.include_unlisted else f for name, f in fields.items()}
    return Dataset("medpix2", root, split, samples, fields, problems)
