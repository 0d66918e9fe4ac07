"""A plain folder of images (no class folders, no manifest): ids and paths, no labels or captions.

What ``medclip embed`` reads when it is pointed at a folder no data-set format recognises, such
as a collection to search.
"""

from __future__ import annotations

from pathlib import Path

from medclip_cli.data.dataset import Dataset, Sample
from medclip_cli.data.folder import IMAGE_SUFFIXES
from medclip_cli.data.images import is_dicom
from medclip_cli.errors import DataError

FORMAT = "images"
SPLIT = "all"


def load_image_list(root: Path) -> Dataset:
    """Every image below ``root`` (recursively, sorted), with its path relative to ``root`` as id."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder", hint="pass a folder of images or a data set")
    images = sorted(p for p in root.rglob("*") if not _hidden(p, root) and _is_image(p))
    if not images:
        kinds = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
        raise DataError(f"{root}: no images in this folder ({kinds} or DICOM)", hint="check --data")
    samples = [Sample(id=p.relative_to(root).as_posix(), image=p, caption=None, labels={}) for p in images]
    return Dataset(FORMAT, root, SPLIT, samples, {})


def _is_image(path: Path) -> bool:
    # DICOM files often have no extension at all: recognised by their DICM magic.
    return path.is_file() and (path.suffix.lower() in IMAGE_SUFFIXES or (not path.suffix and is_dicom(path)))


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)
