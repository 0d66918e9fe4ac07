"""CSV/TSV and JSON-lines manifests: one row per image, with caption, labels and split columns.

The standard ``csv`` module reads the files rather than pandas: it reports the physical line of
every row (quoted captions may span lines), which is what a user needs to fix a manifest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from medclip_cli.data.dataset import Dataset, Sample
from medclip_cli.data.labels import LabelField, read_label_fields
from medclip_cli.data.links import broken_link_reason
from medclip_cli.data.manifest_read import Row, iter_csv, iter_jsonl
from medclip_cli.redact import excerpt
from medclip_cli.errors import DataError, UsageError

ALL_SPLIT = "all"  # the whole file, when it has no split column
CSV_SUFFIXES = {".csv", ".tsv", ".tab"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
IMAGE_COLUMNS = ("image", "image_path", "filepath", "path", "file", "filename", "img")
CAPTION_COLUMNS = ("caption", "text", "title", "description", "report")
SPLIT_COLUMN = "split"
ID_COLUMN = "id"
SPLIT_ORDER = {"train": 0, "dev": 1, "val": 1, "validation": 1, "test": 2}


@dataclass(frozen=True)
class TableOptions:
    """Which column holds what (None: the usual names, see the module constants)."""

    image_column: str | None = None
    caption_column: str | None = None
    label_columns: tuple[str, ...] | None = None  # None: every other column
    split_column: str | None = None
    id_column: str | None = None
    labels_file: Path | None = None  # TOML with readable class names (configs/labels format)
    image_root: Path | None = None  # folder relative image paths resolve against (default: the file's)
    delimiter: str | None = None  # CSV only; None: sniffed
    finding_columns: tuple[str, ...] | None = None  # one column per finding: a multi-label field
    findings_convention: str = "chexpert"  # how finding values read (data/findings.py)

    @classmethod
    def from_options(cls, options: dict) -> "TableOptions":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise UsageError(f"unknown data-set option {unknown[0]!r} (known: {', '.join(sorted(known))})")
        values = {k: v for k, v in options.items() if v is not None}
        for key in ("label_columns", "finding_columns"):
            if isinstance(values.get(key), str):
                values[key] = tuple(c.strip() for c in values[key].split(",") if c.strip())
            elif key in values:
                values[key] = tuple(values[key])
        for key in ("labels_file", "image_root"):
            if key in values:
                values[key] = Path(values[key])
        return cls(**values)


# --- detection and splits -------------------------------------------------------------------


def detect_csv(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in CSV_SUFFIXES


def detect_jsonl(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in JSONL_SUFFIXES


def splits_csv(path: Path, **options: object) -> list[str]:
    opts = TableOptions.from_options(options)
    return _splits(path, *iter_csv(path, opts.delimiter), opts)


def splits_jsonl(path: Path, **options: object) -> list[str]:
    opts = TableOptions.from_options(options)
    return _splits(path, *iter_jsonl(path), opts)


def _splits(path: Path, columns: list[str], rows: Iterable[Row], opts: TableOptions) -> list[str]:
    split_col = _split_column(path, columns, opts)
    if split_col is None:
        for _ in rows:  # the whole file is still read: a malformed one fails here as when loaded
            pass
        return [ALL_SPLIT]
    return _split_order({str(r.get(split_col, "")).strip() for _, r in rows} - {""})


def _split_order(found: set[str]) -> list[str]:
    return sorted(found, key=lambda s: (SPLIT_ORDER.get(s.lower(), 3), s))


# --- loading --------------------------------------------------------------------------------


def load_csv(path: Path, split: str = ALL_SPLIT, **options: object) -> Dataset:
    opts = TableOptions.from_options(options)
    columns, rows = iter_csv(path, opts.delimiter)
    return _to_dataset("csv", path, split, columns, rows, opts)


def load_jsonl(path: Path, split: str = ALL_SPLIT, **options: object) -> Dataset:
    opts = TableOptions.from_options(options)
    columns, rows = iter_jsonl(path)
    return _to_dataset("jsonl", path, split, columns, rows, opts)


@dataclass(frozen=True)
class _Columns:
    """The columns a manifest's rows are read through, resolved against its header."""

    image: str
    caption: str | None
    split: str | None
    id: str | None
    labels: tuple[str, ...]
    findings: tuple[str, ...] = ()

    @classmethod
    def resolve(cls, path: Path, columns: list[str], opts: TableOptions) -> "_Columns":
        image = _pick(path, columns, opts.image_column, IMAGE_COLUMNS, "image", "--image-column")
        caption = _pick(
            path, columns, opts.caption_column, CAPTION_COLUMNS, "caption", "--caption-column", required=False
        )
        split = _split_column(path, columns, opts)
        if opts.id_column and opts.id_column not in columns:
            raise DataError(
                f"{path}: no column {opts.id_column!r} (columns: {', '.join(columns)})", hint="check --id-column"
            )
        id_col = opts.id_column or (ID_COLUMN if ID_COLUMN in columns else None)
        findings = _finding_columns(path, columns, opts)
        labels = _label_columns(path, columns, opts, {image, caption, split, id_col, *findings} - {None})
        return cls(image, caption, split, id_col, tuple(labels), findings)


def _to_dataset(fmt: str, path: Path, split: str, columns: list[str], rows: Iterator[Row], opts: TableOptions) -> Dataset:
    """The samples of ``split``, read row by row: per row, only a small :class:`Sample` is kept
    (its path relative to one shared folder string, its id that same string when the manifest
    has no id column, and one label dict shared by all rows with the same labels)."""
    cols = _Columns.resolve(path, columns, opts)
    root = os.path.normpath(Path(opts.image_root or path.parent).absolute())
    fields = read_label_fields(opts.labels_file) if opts.labels_file else {}
    samples, problems, seen = [], [], set()
    shared_labels: dict[tuple, dict[str, str]] = {}
    chosen = _SplitRows(path, split, cols, rows)
    for lineno, row in chosen:
        where = f"{path.name} line {lineno}"
        raw_image = str(row.get(cols.image) or "").strip()
        name = _image_name(root, raw_image) if raw_image and "\0" not in raw_image else None
        if not raw_image:
            problems.append(f"{where}: empty {cols.image!r}; skipped")
        elif "\0" in raw_image:
            problems.append(f"{where}: image path {excerpt(raw_image)!r} holds a NUL byte; skipped")
        elif name is None:
            problems.append(f"{where}: image path {excerpt(raw_image)!r} points outside {root}; skipped")
        elif name in seen:
            problems.append(f"{where}: duplicate image {excerpt(raw_image)!r}; skipped")
        elif (broken := broken_link_reason(os.path.join(root, name))) is not None:
            problems.append(f"{where}: {broken}")
        else:
            seen.add(name)
            samples.append(_sample(row, name, root, cols, fields, shared_labels))
    chosen.check()
    label_fields = {col: _field(col, fields.get(col), samples) for col in cols.labels}
    dataset = Dataset(fmt, Path(path), split, samples, label_fields, problems)
    if cols.findings:
        from medclip_cli.data.findings import DEFAULT_FIELD, FindingsField

        dataset.multilabel_fields[DEFAULT_FIELD] = FindingsField(
            DEFAULT_FIELD, cols.findings, cols.findings, opts.findings_convention
        )
    return dataset


class _SplitRows:
    """The rows of one split, as they are read; :meth:`check` then refuses a split with none."""

    def __init__(self, path: Path, split: str, cols: _Columns, rows: Iterator[Row]) -> None:
        self.path, self.split, self.cols, self.rows = path, split, cols, rows
        self.found: set[str] = set()
        self.count = 0
        if cols.split is None and split != ALL_SPLIT:
            raise DataError(
                f"{path}: has no split column, so its only split is {ALL_SPLIT!r} (asked for {split!r})",
                hint=f"use --split {ALL_SPLIT}, or add a '{SPLIT_COLUMN}' column (or name yours with --split-column)",
            )

    def __iter__(self) -> Iterator[Row]:
        column = self.cols.split
        for lineno, row in self.rows:
            if column is not None:
                value = str(row.get(column, "")).strip()
                if value != self.split:
                    if value:
                        self.found.add(value)
                    continue
            self.count += 1
            yield lineno, row

    def check(self) -> None:
        if self.cols.split is not None and not self.count:
            available = ", ".join(_split_order(self.found)) or "none"
            raise DataError(
                f"{self.path}: has no rows of split {self.split!r} (splits: {available})", hint="choose another --split"
            )


def _sample(
    row: dict, name: str, root: str, cols: _Columns, fields: dict[str, LabelField], shared: dict[tuple, dict[str, str]]
) -> Sample:
    caption = row.get(cols.caption) if cols.caption else None
    labels = {}
    for col in cols.labels:
        value = fields[col].canonical(row.get(col)) if col in fields else _plain(row.get(col))
        if value is not None:
            labels[col] = value
    for col in cols.findings:  # raw 1/0/-1 values; blank stays absent
        value = _plain(row.get(col))
        if value is not None:
            labels[col] = value
    labels = shared.setdefault(tuple(labels.items()), labels)  # one dict per distinct set of labels
    given_id = _plain(row.get(cols.id)) if cols.id else None
    return Sample(
        id=given_id or name,
        image=name,
        caption=str(caption).strip() if caption is not None else None,
        labels=labels,
        folder=root,
    )


def _plain(value: object) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def _field(name: str, listed: LabelField | None, samples: Sequence[Sample]) -> LabelField:
    seen = sorted({s.labels[name] for s in samples if name in s.labels})
    if listed is None:  # no labels file entry: the raw value is the readable name
        return LabelField(name, tuple(seen), {v: v for v in seen}, include_unlisted=True)
    return listed.with_classes(seen) if listed.include_unlisted else listed


def _image_name(root: str, raw: str) -> str | None:
    """``raw``'s path relative to ``root`` (``/``-separated, normalised), or None when it leads
    outside ``root`` (a normalised absolute path). Lexical (no symlink resolution): a manifest cannot name files outside the
    data folder with `..` or an absolute path, while links the user placed inside it still work."""
    candidate = os.path.normpath(os.path.join(root, os.path.expanduser(raw)))
    if candidate == root:
        return "."
    prefix = root.rstrip(os.sep) + os.sep
    if not candidate.startswith(prefix):
        return None
    return candidate[len(prefix) :].replace(os.sep, "/")


def _pick(
    path: Path,
    columns: list[str],
    chosen: str | None,
    usual: Iterable[str],
    what: str,
    option: str,
    *,
    required: bool = True,
) -> str | None:
    if chosen is not None:
        if chosen not in columns:
            raise DataError(
                f"{path}: no column {chosen!r} (columns: {', '.join(columns) or 'none'})", hint=f"check {option}"
            )
        return chosen
    lowered = {c.lower(): c for c in columns}
    for name in usual:
        if name in lowered:
            return lowered[name]
    if required:
        raise DataError(
            f"{path}: no {what} column (columns: {', '.join(columns) or 'none'})",
            hint=f"name it with {option}",
        )
    return None


def _split_column(path: Path, columns: list[str], opts: TableOptions) -> str | None:
    if opts.split_column is not None:
        if opts.split_column not in columns:
            raise DataError(
                f"{path}: no column {opts.split_column!r} (columns: {', '.join(columns)})", hint="check --split-column"
            )
        return opts.split_column
    return SPLIT_COLUMN if SPLIT_COLUMN in columns else None


def _finding_columns(path: Path, columns: list[str], opts: TableOptions) -> tuple[str, ...]:
    chosen = opts.finding_columns or ()
    missing = [c for c in chosen if c not in columns]
    if missing:
        raise DataError(
            f"{path}: no finding column {missing[0]!r} (columns: {', '.join(columns)})", hint="check --finding-columns"
        )
    return tuple(dict.fromkeys(chosen))


def _label_columns(path: Path, columns: list[str], opts: TableOptions, used: set[str]) -> list[str]:
    if opts.label_columns is not None:
        missing = [c for c in opts.label_columns if c not in columns]
        if missing:
            raise DataError(
                f"{path}: no column {missing[0]!r} (columns: {', '.join(columns)})", hint="check --label-column"
            )
        return [c for c in opts.label_columns if c not in (opts.finding_columns or ())]
    return [c for c in columns if c not in used]
