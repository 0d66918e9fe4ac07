"""Hostile inputs of issue 17: files that are small on disk and huge decoded, things that are not
regular files, manifests written by Python's and pandas' own writers, plugins that misbehave."""

from __future__ import annotations

import csv
import json
import os
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.reliability.inputs import CSV_HEADER, png, write

# Captions with every character a writer keeps inside a quoted field or a JSON string.
HOSTILE_CAPTIONS = [
    "two\nlines",
    "a lone \r carriage return",
    "separators \u2028 \u2029 \x85 \x0b \x0c \x1c \x1d \x1e",
    'quotes "a", commas, semi;colons; pipes | and \t tabs',
]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header(path: Path, width: int, height: int, depth: int = 8) -> Path:
    """A PNG whose header claims ``width`` x ``height`` (grey, ``depth`` bits); a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    body = _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 10)) + _chunk(b"IEND", b"")
    return write(path, b"\x89PNG\r\n\x1a\n" + body)


def strip_png(path: Path, width: int, height: int) -> Path:
    """A real, decodable grey PNG of ``width`` x ``height``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width), dtype=np.uint8)).save(path)
    return path


def float_tiff_with_inf(path: Path) -> Path:
    """A float32 TIFF with a gradient and one +inf and one -inf pixel."""
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.linspace(0.0, 1.0, 30 * 40, dtype=np.float32).reshape(30, 40)
    values[3, 3], values[5, 5] = np.inf, -np.inf
    Image.fromarray(values, mode="F").save(path)
    return path


def dicom(path: Path, rows: int, columns: int, *, frames: int = 1, samples: int = 1, bits: int = 16,
          deflated: bool = False, data: bytes | None = None) -> Path:
    """An uncompressed (or deflated) DICOM image; zero pixels unless ``data`` is given."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian if deflated else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "OT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, samples
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = data if data is not None else bytes(rows * columns * frames * samples * bits // 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def rgb16_dicom(path: Path) -> Path:
    """16-bit RGB: values up to 65,535, which wrap modulo 256 when cast to uint8."""
    values = (np.arange(16 * 16 * 3, dtype=np.uint32).reshape(16, 16, 3) * 85).astype(np.uint16)
    return dicom(path, 16, 16, samples=3, data=values.tobytes())


def fifo(path: Path) -> Path:
    """A named pipe. A watchdog opens and closes its write end for a minute, so that a reader that
    wrongly opened it gets end-of-file and the test fails instead of hanging."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)

    def unblock() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and os.path.exists(path):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            time.sleep(0.5)

    threading.Thread(target=unblock, daemon=True).start()
    return path


def link(path: Path, target: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def _rows(root: Path, captions: list[str]) -> list[dict]:
    for i in range(len(captions)):
        png(root / "img" / f"a{i}.png", seed=i)
    return [{"image": f"img/a{i}.png", "caption": c, "modality": "CT" if i % 2 else "MR", "split": "train"}
            for i, c in enumerate(captions)]  # fmt: skip


def python_csv(root: Path, captions: list[str] = HOSTILE_CAPTIONS) -> Path:
    rows = _rows(root, captions)
    with open(root / "pairs.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root / "pairs.csv"


def python_jsonl(root: Path, captions: list[str] = HOSTILE_CAPTIONS, *, ensure_ascii: bool = False) -> Path:
    rows = _rows(root, captions)
    text = "".join(json.dumps(r, ensure_ascii=ensure_ascii) + "\n" for r in rows)
    return write(root / "pairs.jsonl", text)


def pandas_manifest(root: Path, kind: str) -> Path:
    import pandas as pd

    frame = pd.DataFrame(_rows(root, HOSTILE_CAPTIONS))
    if kind == "csv":
        frame.to_csv(root / "pairs.csv", index=False)
        return root / "pairs.csv"
    if kind == "tsv":
        frame.to_csv(root / "pairs.tsv", sep="\t", index=False)
        return root / "pairs.tsv"
    frame.to_json(root / "pairs.jsonl", orient="records", lines=True, force_ascii=False)
    return root / "pairs.jsonl"


def csv_with_image_line(root: Path, image: str) -> Path:
    for i in range(3):
        png(root / "img" / f"a{i}.png", seed=i)
    lines = [f"img/a{i}.png,scan {i},{'CT' if i % 2 else 'MR'},train" for i in range(3)]
    return write(root / "pairs.csv", "\n".join([CSV_HEADER, *lines, f"{image},bad,CT,train"]) + "\n")


def plugin_source(body: str) -> str:
    return "from medclip_cli import hookimpl\n" + body


def zip_entries(entries: list[tuple[str, bytes]]) -> bytes:
    """A zip with the entries in order, duplicates kept (zipfile warns, and writes them)."""
    import io
    import warnings
    import zipfile

    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as zf:
        warnings.simplefilter("ignore")
        for name, data in entries:
            zf.writestr(name, data)
    return buffer.getvalue()
