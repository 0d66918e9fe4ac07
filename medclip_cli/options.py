"""Option aliases shared by several commands (one definition, one help text)."""

from __future__ import annotations

import math

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from medclip_cli.errors import UsageError

ModelDir = Annotated[
    Optional[Path],
    typer.Option(
        "--model",
        help="A model: bundle or model folder, OpenAI .pt file, name (biomedclip, pubmedclip, vit-b-32; "
        "`medclip encoders`) or hub id (hf-hub:org/name).",
        show_default=False,
    ),
]
Encoder = Annotated[
    Optional[str],
    typer.Option("--encoder", "-e", help="Image or CLIP encoder name (see `medclip encoders`).", show_default=False),
]
TextEncoder = Annotated[
    Optional[str],
    typer.Option("--text-encoder", help="Text encoder, when not the CLIP encoder's own.", show_default=False),
]
Pretrained = Annotated[
    Optional[str],
    typer.Option(
        "--pretrained",
        "-p",
        help="Pretrained tag (e.g. openai), a weights file or bundle, or none (random weights, from scratch). "
        "Default: the encoder's canonical weights (openai for the CLIP models).",
        show_default=False,
    ),
]
TextPretrained = Annotated[
    str,
    typer.Option("--text-pretrained", help="Text tower tag or none; auto: pretrained HF towers, else the --pretrained tag."),
]
ImageSize = Annotated[
    Optional[int],
    typer.Option("--image-size", min=1, help="Input size in pixels (default: the encoder's).", show_default=False),
]
Data = Annotated[
    Optional[Path],
    typer.Option("--data", "-d", help="Data set root or file (default: the downloaded MedPix 2.0).", show_default=False),
]
DatasetKind = Annotated[
    Optional[str],
    typer.Option("--dataset", help="Data-set format: medpix2, openi, csv, jsonl, webdataset, folder (default: detected).", show_default=False),
]
# Which columns of a CSV/TSV/JSONL manifest hold what (data check, finetune, evaluate).
ImageColumn = Annotated[
    Optional[str], typer.Option("--image-column", help="CSV/JSONL: image path column.", show_default=False)
]
CaptionColumn = Annotated[
    Optional[str], typer.Option("--caption-column", help="CSV/JSONL: caption column.", show_default=False)
]
LabelColumns = Annotated[
    Optional[List[str]],
    typer.Option("--label-column", help="CSV/JSONL: label column (repeat; default: all others).", show_default=False),
]
SplitColumn = Annotated[
    Optional[str], typer.Option("--split-column", help="CSV/JSONL: split column (default: split).", show_default=False)
]
def column_options(
    image_column: str | None, caption_column: str | None, label_columns: list[str] | None, split_column: str | None
) -> dict:
    """The column options that were given, as ``load_dataset`` takes them (and JSON can store them)."""
    given = {
        "image_column": image_column,
        "caption_column": caption_column,
        "label_columns": list(label_columns) if label_columns else None,
        "split_column": split_column,
    }
    return {k: v for k, v in given.items() if v is not None}


Device = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, mps, or auto.")]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
Output = Annotated[Optional[Path], typer.Option("--output", "-o", help="Output folder.", show_default=False)]


def spell_flags(ctx: typer.Context) -> None:
    """Let lower layers' messages name this command's flags (``--wd`` for ``weight_decay``):
    each parameter's long option, by parameter name (``medclip_cli/flags.py``)."""
    from medclip_cli.flags import spell

    spell({p.name: max(p.opts, key=len) for p in ctx.command.params if p.name and p.opts})


def given(ctx: typer.Context) -> set[str]:
    """The parameters given on the command line (not left at their defaults)."""
    # Compared by name: Typer may bundle its own copy of click's ParameterSource enum.
    sources = {name: ctx.get_parameter_source(name) for name in ctx.params}
    return {name for name, source in sources.items() if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")}


def label_list(labels: str | None, label: list[str] | None) -> list[str]:
    names = [s.strip() for s in (labels or "").split(",") if s.strip()] + [s.strip() for s in (label or []) if s.strip()]
    if not names:
        raise UsageError("no labels given", hint='pass --labels "a,b,c" or --label A --label B')
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"label given twice: {', '.join(duplicates)}")
    return names


def dicom_window(window: str | None) -> tuple[float, float] | None:
    if window is None:
        return None
    parts = window.split(",")
    try:
        center, width = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"--window {window!r}: expected CENTER,WIDTH such as 40,400") from None
    if not (math.isfinite(center) and math.isfinite(width)):
        raise UsageError(f"--window {window!r}: the center and width must be finite numbers such as 40,400")
    if width <= 0:
        raise UsageError(f"--window {window!r}: the width must be positive")
    return center, width
