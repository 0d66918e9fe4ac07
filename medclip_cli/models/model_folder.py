"""Writing a model folder (a bundle, or a transformers model saved back in its own format):
all of it or nothing, and the medclip manifest it carries."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from medclip_cli.atomic import atomic_dir
from medclip_cli.errors import OutputError


def saved_manifest(model, provenance: dict | None) -> dict:
    """The medclip manifest a saved model carries: the model's own, its provenance, scale and context."""
    manifest = dict(model.manifest)
    if provenance:
        manifest["provenance"] = {**manifest.get("provenance", {}), **provenance}
    manifest["logit_scale"] = model.logit_scale
    manifest["context_length"] = model.context_length
    return manifest


@contextmanager
def new_model_folder(directory: Path, what: str) -> Iterator[Path]:
    """A temporary folder that replaces ``directory`` when the block ends (a complete new model or
    the old one untouched); a file system error is an :class:`OutputError` naming ``what``."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{directory}: cannot write the {what} here ({exc.strerror})") from exc
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"{directory}: exists and is not a folder", hint="choose another --output")
    try:
        with atomic_dir(directory) as tmp:
            yield tmp
    except OSError as exc:
        raise OutputError(f"{directory}: writing the {what} failed ({exc.strerror or exc})") from exc
