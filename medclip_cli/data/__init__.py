"""Data sets (MedPix 2.0, CSV/JSONL, image folders, plugins) and medical image loading."""

from __future__ import annotations

from pathlib import Path

from medclip_cli.data.dataset import Dataset, DatasetFormat, Sample
from medclip_cli.data.home import default_data_root, medclip_home
from medclip_cli.data.labels import LabelField
from medclip_cli.errors import DataError, UsageError
from medclip_cli.flags import flag
from medclip_cli.plugins import collect, did_you_mean


def dataset_formats() -> dict[str, DatasetFormat]:
    """Every registered data-set format, by name (collected from the plugins once)."""
    return collect("register_datasets", DatasetFormat, what="data-set format")


def resolve_format(path: Path, format: str | None = None) -> DatasetFormat:
    """The format named by ``--dataset``, or the first whose ``detect`` accepts ``path``."""
    formats = dataset_formats()
    if format is not None:
        if format not in formats:
            raise UsageError(
                f"unknown --dataset {format!r} (known: {', '.join(formats)}){did_you_mean(format, formats)}"
            )
        return formats[format]
    if not path.exists():
        raise DataError(f"{path}: no such file or folder", hint="check --data")
    for fmt in formats.values():
        if fmt.detect(path):
            return fmt
    raise DataError(
        f"{path}: cannot tell the data-set format",
        hint=f"pass --dataset ({', '.join(formats)})",
    )


def load_dataset(path: str | Path, split: str = "train", format: str | None = None, **options) -> Dataset:
    """Read one split of the data set at ``path``."""
    path = Path(path)
    fmt = resolve_format(path, format)
    options = _given(fmt, fmt.load, options)
    return fmt.load(path, split, **options)


def list_splits(path: str | Path, format: str | None = None, **options) -> list[str]:
    """The splits of the data set at ``path`` (options as for :func:`load_dataset`)."""
    path = Path(path)
    fmt = resolve_format(path, format)
    # Options are passed only when given: a plugin's ``splits(root)`` need not accept any.
    options = _given(fmt, fmt.splits, options)
    return fmt.splits(path, **options) if options else fmt.splits(path)


def _given(fmt: DatasetFormat, function, options: dict) -> dict:
    """The options that were set, after checking that ``function`` of ``fmt`` accepts them."""
    import inspect

    given = {k: v for k, v in options.items() if v is not None}
    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # builtins and some callables have no signature: let them decide
        return given
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return given
    names = {p.name for p in params}
    refused = [k for k in given if k not in names]
    if refused:
        option = flag(refused[0])
        raise UsageError(
            f"{option}: the {fmt.name} data-set format takes no such option",
            hint="column options are for CSV/TSV/JSONL manifests; leave it out" if "column" in refused[0] else None,
        )
    return given


__all__ = [
    "Dataset",
    "DatasetFormat",
    "LabelField",
    "Sample",
    "dataset_formats",
    "default_data_root",
    "list_splits",
    "load_dataset",
    "medclip_home",
    "resolve_format",
]
