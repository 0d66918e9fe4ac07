"""Reading CSV/TSV and JSON-lines manifests into rows, with the same limits for both formats.

Whatever Python's ``csv`` and ``json`` modules or pandas write is read back as written: a quoted
caption may hold any character (line breaks, ``\\r``, U+2028, the delimiter, a NUL byte), so
records are split only where the format splits them (``csv`` on its own quoting, JSON lines on
``\\n``). Only a regular file is read, at most :data:`MAX_MANIFEST_BYTES`; a field longer than
:data:`MAX_FIELD_CHARS` is refused in either format. Messages quote at most a short excerpt.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Iterator

from medclip_cli.errors import DataError
from medclip_cli.files import read_regular
from medclip_cli.redact import excerpt

Row = tuple[int, dict]  # (line number, column -> value)

MAX_MANIFEST_BYTES = 4 << 30  # a manifest is text: more than this is not one
MAX_FIELD_CHARS = 1_000_000  # one caption or path; the same limit for CSV and JSON lines
_SNIFF_CHARS = 64 * 1024
_DELIMITERS = (",", ";", "\t", "|")
_LONE_CR = re.compile(r"\r(?!\n)")


def read_csv(path: Path, delimiter: str | None = None) -> tuple[list[str], list[Row]]:
    columns, rows = iter_csv(path, delimiter)
    return columns, list(rows)


def iter_csv(path: Path, delimiter: str | None = None) -> tuple[list[str], Iterator[Row]]:
    """The header, and the rows one at a time: a large manifest is never held as rows all at once.

    A row whose field count differs from the header's is reported when the rows are exhausted
    (the first such line, and how many more), before any of them can be used.
    """
    text = read_text(path)
    delimiter = delimiter or _sniff_delimiter(text[:_SNIFF_CHARS], path)
    text, restore = _protect_lone_cr(text)
    records = _csv_records(path, text, delimiter, restore)
    header = next(records)
    if header is None or not any(h.strip() for h in header):
        records.close()
        raise DataError(f"{path}: empty file (no header row)")
    columns = [h.strip() for h in header]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        records.close()
        raise DataError(f"{path} line 1: column {excerpt(duplicated[0])!r} appears twice in the header")
    return columns, _csv_rows(path, records, columns)


def _csv_records(path: Path, text: str, delimiter: str, restore) -> Iterator:
    """The header (None for an empty file), then (line number, values) of each non-blank record."""
    previous = csv.field_size_limit(MAX_FIELD_CHARS)
    reader = csv.reader(_physical_lines(text), delimiter=delimiter)
    try:
        header = next(reader, None)
        yield None if header is None else restore(header)
        start = reader.line_num + 1
        for values in reader:
            lineno, start = start, reader.line_num + 1
            if any(v.strip() for v in values):
                yield lineno, restore(values)
    except csv.Error as exc:
        why = str(exc)
        if "field larger than field limit" in why:
            why = f"a field is longer than {MAX_FIELD_CHARS:,} characters"
        raise DataError(f"{path} line {reader.line_num}: malformed CSV ({excerpt(why)})") from exc
    finally:
        csv.field_size_limit(previous)


def _csv_rows(path: Path, records: Iterator, columns: list[str]) -> Iterator[Row]:
    bad: list[tuple[int, str]] = []
    for lineno, values in records:
        if len(values) != len(columns):
            bad.append((lineno, f"{len(values)} fields, the header has {len(columns)}"))
        elif not bad:
            yield lineno, dict(zip(columns, values))
    if bad:
        lineno, why = bad[0]
        more = f" (and {len(bad) - 1} more lines)" if len(bad) > 1 else ""
        raise DataError(f"{path} line {lineno}: {why}{more}", hint="quote fields that contain the delimiter")


def _physical_lines(text: str) -> Iterator[str]:
    """``text``'s lines with their endings, as ``io.StringIO(text, newline="")`` yields them (after
    :func:`_protect_lone_cr`, a text with any ``\n`` has no lone ``\r``), without a copy of it."""
    sep = "\n" if "\n" in text else "\r"
    start = 0
    while (end := text.find(sep, start)) >= 0:
        yield text[start : end + 1]
        start = end + 1
    if start < len(text):
        yield text[start:]


def _protect_lone_cr(text: str):
    """pandas writes a caption's lone ``\r`` unquoted; in a file whose lines end in ``\n`` it is
    data, so it is hidden from ``csv`` behind a character the text does not contain."""
    if "\n" not in text or not _LONE_CR.search(text):
        return text, lambda values: values
    sentinel = next(chr(c) for c in range(0xF0000, 0xFFFFE) if chr(c) not in text)
    return _LONE_CR.sub(sentinel, text), lambda values: [v.replace(sentinel, "\r") for v in values]


def _sniff_delimiter(sample: str, path: Path) -> str:
    """The delimiter that splits the header into columns and every sampled record alike.

    Tried in the order , ; tab |: captions full of semicolons do not make a comma-separated file
    look semicolon-separated, as :class:`csv.Sniffer` can be led to think.
    """
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    if len(sample) == _SNIFF_CHARS:  # cut in the middle of a record: drop the last line
        sample = sample[: max(sample.rfind("\n"), 0)]
    best, best_columns = ",", 1
    for delimiter in _DELIMITERS:
        try:
            records = [r for r in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter) if r]
        except csv.Error:
            continue
        if not records:
            continue
        width = len(records[0])
        if width > 1 and all(len(r) == width for r in records[1:50]):
            return delimiter
        if width > best_columns:
            best, best_columns = delimiter, width
    return best


def read_text(path: Path) -> str:
    data = read_regular(path, DataError, "manifest", limit=MAX_MANIFEST_BYTES)
    try:
        return data.decode("utf-8-sig")  # Excel writes a byte-order mark
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path} line {line}: not UTF-8 text (byte {exc.start})", hint="save the file as UTF-8"
        ) from exc


def read_jsonl(path: Path) -> tuple[list[str], list[Row]]:
    columns, rows = iter_jsonl(path)
    return columns, list(rows)


def iter_jsonl(path: Path) -> tuple[list[str], Iterator[Row]]:
    """The columns (every record's keys, dotted when nested), and the rows one at a time.

    The columns need every record, so the text is parsed twice (the first pass also finds any
    bad record) rather than holding every record at once.
    """
    text = read_text(path)
    columns: dict[str, None] = {}
    for lineno, line in _lines(text):
        columns.update(dict.fromkeys(_record(path, lineno, line)))
    if not columns and not any(True for _ in _lines(text)):
        raise DataError(f"{path}: empty file (no records)")
    return list(columns), ((lineno, _record(path, lineno, line)) for lineno, line in _lines(text))


def _record(path: Path, lineno: int, line: str) -> dict:
    try:
        record = json.loads(line)
        flat = _flatten(record) if isinstance(record, dict) else None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} line {lineno}: malformed JSON ({exc.msg} at column {exc.colno})") from exc
    except (ValueError, RecursionError) as exc:  # 5,000-digit numbers, nesting too deep to read
        raise DataError(f"{path} line {lineno}: unreadable JSON ({_json_limit(exc)})") from exc
    if flat is None:
        raise DataError(f"{path} line {lineno}: expected a JSON object, got {type(record).__name__}")
    for name, value in flat.items():
        if len(name) > MAX_FIELD_CHARS or (isinstance(value, str) and len(value) > MAX_FIELD_CHARS):
            raise DataError(f"{path} line {lineno}: a field is longer than {MAX_FIELD_CHARS:,} characters")
    return flat


def _json_limit(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return excerpt(str(exc).split(":")[0])


def _lines(text: str) -> Iterator[tuple[int, str]]:
    # JSON lines are split on "\n" alone: json.dumps(ensure_ascii=False) leaves U+2028, U+0085
    # and other characters str.splitlines() breaks at inside strings.
    start, lineno = 0, 0
    while start <= len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line, lineno, start = text[start:end].removesuffix("\r"), lineno + 1, end + 1
        if line.strip():
            yield lineno, line


def _flatten(record: dict, prefix: str = "") -> dict:
    # Nested objects become dotted names: {"Description": {"Caption": ..}} -> "Description.Caption".
    flat: dict = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
