"""Where a model's weights came from, said in every result: a tag, a file and its sha256, or random.

Random weights are never silent: :func:`warn_if_random` issues one warning (shown by the CLI as
one line) when a tower of a model about to classify or evaluate was never trained.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from functools import lru_cache
from pathlib import Path

RANDOM = "random init"


class RandomWeightsWarning(UserWarning):
    """A model with randomly initialised towers is about to make predictions."""


def weights_origin(manifest: dict, bundle: str | Path | None = None) -> str:
    """One phrase: ``tag openai``, ``file W.pt (sha256 …)``, ``bundle DIR (model.safetensors sha256 …)``,
    ``random init``, or ``image …; text …`` when the towers differ."""
    if bundle is not None:
        weights = Path(bundle) / "model.safetensors"
        if weights.is_file():
            return f"bundle {bundle} (model.safetensors sha256 {file_sha256(weights)})"
        return f"model {bundle}"
    image = _one(manifest.get("pretrained"))
    text = _one(manifest.get("text_pretrained"))
    if image == text or manifest.get("text_encoder") in (None, manifest.get("image_encoder")):
        return image
    return f"image {image}; text {text}"


def random_towers(manifest: dict) -> list[str]:
    """The towers of a model built from encoders (not a loaded bundle) that have random weights."""
    shared = manifest.get("text_encoder") in (None, manifest.get("image_encoder"))
    if shared:
        return ["image", "text"] if manifest.get("pretrained") is None else []
    return [name for name, key in (("image", "pretrained"), ("text", "text_pretrained")) if manifest.get(key) is None]


def warn_if_random(manifest: dict, label: str) -> None:
    """One warning when ``label``'s model (built from encoders) has random towers: its predictions mean nothing."""
    towers = random_towers(manifest)
    if not towers:
        return
    which = " and ".join(towers)
    warnings.warn(
        f"{label}: the {which} tower{'s have' if len(towers) > 1 else ' has'} random weights "
        "(--pretrained none): its predictions mean nothing; name a pretrained tag or weights file to assess a model",
        RandomWeightsWarning,
        stacklevel=2,
    )


def _one(value: object) -> str:
    if value is None:
        return RANDOM
    text = str(value)
    path = Path(text).expanduser()
    if (os.sep in text or path.exists()) and path.is_file():
        return f"file {text} (sha256 {file_sha256(path)})"
    if path.is_dir():
        return f"model {text}"
    return f"tag {text}"


def file_sha256(path: Path) -> str:
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: a changed file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
