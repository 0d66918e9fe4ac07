"""Data sets (MedPix 2.0, CSV/JSONL, image folders, plugins) and medical image loading."""

from __future__ import annotations

from pathlib import Path

from medclip_cli.data.dataset import Dataset, DatasetFormat, Sample
from medclip_cli.data.labels import LabelField
from medclip_cli.errors import DataError, PluginError, UsageError

_FORMATS: dict[str, DatasetFormat] | None = None


def dataset_formats() -> dict[str, DatasetFormat]:
    """Every registered data-set format, by name (collected from the plugins once)."""
    global _FORMATS
    if _FORMATS is None:
        from medclip_cli.plugins import get_plugin_manager

        formats: dict[str, DatasetFormat] = {}
        for impl in get_plugin_manager().hook.register_datasets.get_hookimpls():

            def add(fmt: DatasetFormat, plugin: str = impl.plugin_name) -> None:
                if fmt.name in formats:
                    raise PluginError(
                        f"data-set format {fmt.name!r} is registered by both {formats[fmt.name].plugin!r} and {plugin!r}"
                    )
                formats[fmt.name] = DatasetFormat(**{**fmt.__dict__, "plugin": plugin})

            impl.function(register=add)
        _FORMATS = formats
    return _FORMATS


def reset_formats() -> None:
    global _FORMATS
    _FORMATS = None


def resolve_format(path: Path, format: str | None = None) -> DatasetFormat:
    """The format named by ``--dataset``, or the first whose ``detect`` accepts ``path``."""
    formats = dataset_formats()
    if format is not None:
        if format not in formats:
            raise UsageError(f"unknown --dataset {format!r} (known: {', '.join(formats)})")
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
    return fmt.load(path, split, **options)


def list_splits(path: str | Path, format: str | None = None) -> list[str]:
    path = Path(path)
    return resolve_format(path, format).splits(path)


__all__ = [
    "Dataset",
    "DatasetFormat",
    "LabelField",
    "Sample",
    "dataset_formats",
    "list_splits",
    "load_dataset",
    "resolve_format",
]
