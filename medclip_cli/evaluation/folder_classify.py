"""Classify every image under a folder, streaming rows to a CSV or JSON-lines file.

Images are found by walking the folder (one directory listing at a time, never a list of every
path), decoded and embedded ``batch_size`` at a time, and each batch's rows are appended to the
output and flushed before the next batch is read: memory stays the same for 1,000 or 100,000
images, and a run that stops leaves every finished row on disk. A rerun with the same output reads
the paths already there and skips them (a torn last line from a killed run is cut off first).

Files are images by extension (PNG, JPEG, TIFF, BMP, DICOM) or, whatever their name, by the
``DICM`` marker DICOM files carry at byte 128 (PACS exports often have no extension).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from medclip_cli.data.images import is_dicom, load_image
from medclip_cli.errors import ImageError, OutputError, UsageError
from medclip_cli.progress import NullProgress, ProgressReporter

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom", ".dic"}
OUTPUT_SUFFIXES = (".csv", ".jsonl")
PROB_PREFIX = "prob:"


@dataclass
class FolderSummary:
    output: str
    n_found: int  # image files under the inputs
    n_already_done: int  # rows already in the output, skipped
    n_classified: int  # rows written by this run (including errors)
    n_errors: int  # of those, images that could not be read
    seconds: float

    def as_dict(self) -> dict:
        return {**self.__dict__, "images_per_second": round(self.n_classified / self.seconds, 2) if self.seconds else None}


def is_image_file(path: Path) -> bool:
    """An image by its extension, or a DICOM file by its preamble whatever its name."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    return is_dicom(path)


def iter_images(inputs: Sequence[Path], recursive: bool = False) -> Iterator[Path]:
    """Image files among ``inputs``: files as given, folders' images in name order (subfolders
    too with ``recursive``). One folder listing is held at a time."""
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            yield from _walk(item, recursive)
        else:
            yield item  # named explicitly: classified, or reported as unreadable


def _walk(folder: Path, recursive: bool) -> Iterator[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    subfolders = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            subfolders.append(entry.path)
        elif entry.is_file() and is_image_file(Path(entry.path)):
            yield Path(entry.path)
    del entries
    if recursive:
        for sub in subfolders:
            yield from _walk(Path(sub), recursive)


class PredictionWriter:
    """Rows appended to ``path`` (.csv or .jsonl) and flushed batch by batch; knows what is done."""

    @classmethod
    def check(cls, path: Path, labels: Sequence[str] | None = None) -> None:
        """Refuse an output name that cannot work, and with ``labels`` an existing file that this
        command cannot resume, before a model is built."""
        path = Path(path)
        if path.suffix.lower() not in OUTPUT_SUFFIXES:
            raise UsageError(f"--output {path}: use a .csv or .jsonl file name")
        if path.is_dir():
            raise OutputError(f"--output {path}: is a folder", hint="name a .csv or .jsonl file")
        if labels is not None and path.is_file() and path.stat().st_size:
            probe = cls.__new__(cls)
            probe._setup(path, labels)
            probe._check_own()
            probe._scan()

    def _setup(self, path: Path, labels: Sequence[str]) -> None:
        self.path = Path(path)
        self.labels = list(labels)
        self.kind = self.path.suffix.lower()
        self.columns = ["path", "top_label", *[PROB_PREFIX + label for label in self.labels], "error"]

    def __init__(self, path: Path, labels: Sequence[str]):
        self.check(path)
        self._setup(path, labels)
        self.done = self._read_done() if self.path.is_file() and self.path.stat().st_size else set()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", newline="", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"--output {path}: cannot write ({exc.strerror or exc})") from exc
        self._csv = csv.writer(self._fh, lineterminator="\n") if self.kind == ".csv" else None
        if self._csv is not None and not self.done and self._fh.tell() == 0:
            self._csv.writerow(self.columns)
            self._fh.flush()

    def _read_done(self) -> set[str]:
        self._check_own()  # before anything is cut: a file medclip did not write is left as it is
        _cut_torn_line(self.path)
        return self._scan()

    def _scan(self) -> set[str]:
        """The paths of the whole rows (a torn last line is left out), each row checked."""
        with open(self.path, "rb") as fh:
            data = fh.read()
        # utf-8-sig: a file saved again by a spreadsheet starts with a byte-order mark
        text = data[: data.rfind(b"\n") + 1].decode("utf-8-sig", errors="replace")
        done: set[str] = set()
        if self.kind == ".csv":
            try:
                rows = list(csv.reader(io.StringIO(text, newline="")))
            except csv.Error as exc:
                raise OutputError(f"--output {self.path}: not a readable CSV ({exc})", hint="use another --output") from None
            done.update(row[0] for row in rows[1:] if row)
        else:
            for lineno, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    done.add(self._record_path(line, lineno))
        return done

    def _check_own(self) -> None:
        """Refuse an existing file that is not this command's output with these labels."""
        with open(self.path, "rb") as fh:
            head = fh.read(1 << 16)
        first, newline, _ = head.partition(b"\n")
        text = first.decode("utf-8-sig", errors="replace").rstrip("\r")
        if self.kind == ".csv":
            try:
                header = next(csv.reader([text]), [])
            except csv.Error:  # e.g. a lone carriage return: not a line this command wrote
                header = []
            if not newline and ",".join(self.columns).startswith(text):
                return  # a header cut short by a killed run: cut off with it
            if header == self.columns:
                return
            ours = header[:2] == self.columns[:2] and header[-1:] == ["error"]
        else:
            try:
                record = json.loads(text)
            except ValueError:
                record = None
            if not newline and text.startswith('{"path": ') and not isinstance(record, dict):
                return  # one row cut short by a killed run: cut off below
            if isinstance(record, dict) and isinstance(record.get("path"), str):
                return  # its labels are checked line by line
            ours = False
        if ours:
            raise OutputError(
                f"--output {self.path}: was written with other labels or columns",
                hint="use the same --labels to resume, or another --output",
            )
        raise OutputError(
            f"--output {self.path}: exists and is not a prediction file of `medclip classify`; left as it is",
            hint="choose another --output",
        )

    def _record_path(self, line: str, lineno: int) -> str:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("path"), str):
            raise OutputError(f"--output {self.path} line {lineno}: not a prediction record", hint="use another --output")
        probs = record.get("probabilities")
        if probs is not None and (not isinstance(probs, dict) or list(probs) != self.labels):
            raise OutputError(
                f"--output {self.path}: was written with other labels",
                hint="use the same --labels to resume, or another --output",
            )
        return record["path"]

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            if self._csv is not None:
                probs = row["probabilities"] or {}
                values = [repr(probs[label]) if label in probs else "" for label in self.labels]
                self._csv.writerow([row["path"], row["top_label"] or "", *values, row["error"] or ""])
            else:
                self._fh.write(json.dumps(row) + "\n")
            self.done.add(row["path"])
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _cut_torn_line(path: Path) -> None:
    """Drop a last line without its newline (a run killed mid-write); the rest is whole rows."""
    with open(path, "rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        step, end = 4096, size
        while end > 0:
            start = max(0, end - step)
            fh.seek(start)
            chunk = fh.read(end - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                fh.truncate(start + cut + 1)
                return
            end = start
        fh.truncate(0)


def count_images(inputs: Sequence[Path], recursive: bool) -> int:
    return sum(1 for _ in iter_images(inputs, recursive))


def classify_folder(
    model,
    inputs: Sequence[Path],
    labels: Sequence[str],
    templates: Sequence[str],
    output: Path,
    *,
    recursive: bool = False,
    window: Sequence[float] | None = None,
    batch_size: int = 64,
    progress: ProgressReporter | None = None,
) -> FolderSummary:
    """Classify every image under ``inputs`` into ``output``, skipping paths it already holds."""
    import torch

    from medclip_cli.data.preprocess import normalize_batch, resize_to_uint8
    from medclip_cli.evaluation.zeroshot import build_zero_shot_classifier, zero_shot_probabilities

    progress = progress or NullProgress()
    start = time.perf_counter()
    writer = PredictionWriter(output, labels)
    total = count_images(inputs, recursive)
    model.module.eval()
    classifier = build_zero_shot_classifier(model, labels, templates)
    task = progress.task(f"classifying {total} images into {Path(output).name}", total=total)
    n_done = n_errors = n_skipped = 0
    pixels: list[np.ndarray] = []
    pending: list[dict] = []  # rows of this batch, in order (errors keep their place)

    def flush() -> None:
        nonlocal pixels, pending
        if pixels:
            batch = normalize_batch(np.stack(pixels), model.preprocess, device=model.device)
            with torch.no_grad():
                probs = zero_shot_probabilities(model.encode_images(batch), classifier, model.logit_scale)
            probs = probs.double().cpu().numpy()
            probs /= probs.sum(axis=1, keepdims=True)
            rows_ok = iter(r for r in pending if r["error"] is None)
            for row, p in zip(rows_ok, probs):
                row["top_label"] = labels[int(np.argmax(p))]
                row["probabilities"] = {label: float(v) for label, v in zip(labels, p)}
        writer.write(pending)
        progress.advance(task, len(pending))
        pixels, pending = [], []

    try:
        for path in iter_images(inputs, recursive):
            key = str(path)
            if key in writer.done:
                n_skipped += 1
                progress.advance(task)
                continue
            row = {"path": key, "top_label": None, "probabilities": None, "error": None}
            try:
                pixels.append(resize_to_uint8(load_image(path, window=window), model.preprocess))
            except ImageError as exc:
                row["error"] = str(exc)
                n_errors += 1
            pending.append(row)
            n_done += 1
            if len(pixels) >= batch_size or len(pending) >= 4 * batch_size:
                flush()
        flush()
    finally:
        writer.close()
        progress.done(task)
    return FolderSummary(str(output), total, n_skipped, n_done, n_errors, time.perf_counter() - start)
