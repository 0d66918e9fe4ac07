"""Image folders: ``root/<split>/<class>/<image>`` or ``root/<class>/<image>``; labels, no captions."""

from __future__ import annotations

from pathlib import Path

from medclip_cli.data.dataset import Dataset, Sample
from medclip_cli.data.images import is_dicom
from medclip_cli.data.labels import LabelField, read_label_fields
from medclip_cli.data.links import broken_link_reason
from medclip_cli.errors import DataError, UsageError

LABEL_FIELD = "label"
ALL_SPLIT = "all"  # a root whose sub-folders are classes, not splits
SPLIT_NAMES = {"train", "training", "dev", "val", "valid", "validation", "test", "testing"}
SPLIT_ORDER = {"train": 0, "training": 0, "dev": 1, "val": 1, "valid": 1, "validation": 1, "test": 2, "testing": 2}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".dcm", ".dicom", ".dic"}
_KNOWN_OPTIONS = {"labels_file"}


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _is_image(path: Path) -> bool:
    if path.name.startswith(".") or not path.is_file():
        return False
    # DICOM files often have no extension at all: recognised by their DICM magic.
    return path.suffix.lower() in IMAGE_SUFFIXES or (not path.suffix and is_dicom(path))


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if _is_image(p))


def _broken_links(folder: Path) -> list[str]:
    # An image link that leads nowhere (a DataLad file not fetched yet, a loop) is not a file, so
    # _images passes over it; it is listed as a skipped image with its reason instead.
    named = (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    return [reason for p in sorted(named) if (reason := broken_link_reason(p)) is not None]


def _has_split_layout(root: Path) -> bool:
    subdirs = _subdirs(root)
    return bool(subdirs) and all(d.name.lower() in SPLIT_NAMES for d in subdirs)


def detect(path: Path) -> bool:
    if not path.is_dir():
        return False
    subdirs = _subdirs(path)
    if _has_split_layout(path):
        subdirs = [c for d in subdirs for c in _subdirs(d)]
    return any(_is_image(p) for d in subdirs[:50] for p in d.iterdir())


def splits(path: Path, **options: object) -> list[str]:
    _check_root(path)
    if not _has_split_layout(path):
        return [ALL_SPLIT]
    names = [d.name for d in _subdirs(path)]
    return sorted(names, key=lambda s: (SPLIT_ORDER.get(s.lower(), 3), s))


def load(path: Path, split: str = ALL_SPLIT, **options: object) -> Dataset:
    unknown = sorted(k for k, v in options.items() if v is not None and k not in _KNOWN_OPTIONS)
    if unknown:
        raise UsageError(f"option {unknown[0]!r} does not apply to image folders (they take only labels_file)")
    _check_root(path)
    available = splits(path)
    if split not in available:
        raise DataError(
            f"{path}: has no split {split!r} (available: {', '.join(available)})", hint="choose another --split"
        )
    split_dir = path if split == ALL_SPLIT else path / split
    labels_file = options.get("labels_file")
    listed = read_label_fields(Path(labels_file)).get(LABEL_FIELD) if labels_file else None
    samples, problems = [], []
    for class_dir in _subdirs(split_dir):
        value = listed.canonical(class_dir.name) if listed is not None else class_dir.name
        if value is None:
            problems.append(
                f"{class_dir}: class {class_dir.name!r} is not in [{LABEL_FIELD}] of {labels_file}; skipped"
            )
            continue
        for image in _images(class_dir):
            rel = image.relative_to(path).as_posix()
            samples.append(Sample(id=rel, image=image, caption=None, labels={LABEL_FIELD: value}))
        problems += [f"{class_dir.name}/{reason}" for reason in _broken_links(class_dir)]
    stray = [p for p in split_dir.iterdir() if _is_image(p)]
    if stray:
        problems.append(f"{split_dir}: {len(stray)} images outside a class folder (e.g. {stray[0].name}); skipped")
    if not samples:
        raise DataError(f"{split_dir}: no images in class folders", hint="expected <class>/<image>.png below it")
    seen = sorted({s.labels[LABEL_FIELD] for s in samples})
    if listed is None:
        field = LabelField(
            LABEL_FIELD, tuple(seen), {v: v for v in seen}, include_unlisted=True, description="folder name"
        )
    else:
        field = listed.with_classes(seen) if listed.include_unlisted else listed
    return Dataset("folder", path, split, samples, {LABEL_FIELD: field}, problems)


def _check_root(path: Path) -> None:
    if not path.is_dir():
        raise DataError(f"{path}: not a folder", hint="an image-folder data set is a folder of class folders")
