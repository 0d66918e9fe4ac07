"""A DICOM file's image header, read without its pixel data (and without inflating a deflated file).

pydicom inflates a *Deflated Explicit VR Little Endian* file completely before it parses anything,
so a 140 KB file can become gigabytes before its ``Rows``/``Columns`` are known. Here only a
bounded prefix is inflated to read the header; the whole stream is then measured without being
kept, and refused when it inflates to more than the decoded-bytes limit.
"""

from __future__ import annotations

import io
import math
import zlib
from pathlib import Path
from typing import BinaryIO

from medclip_cli.data import limits
from medclip_cli.data.limits import ImageGeometry
from medclip_cli.errors import ImageError

DEFLATED = "1.2.840.10008.1.2.1.99"
_PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}  # Pixel Data, Float / Double Float Pixel Data
_HEADER_PREFIX = 16 << 20  # inflated bytes read for a deflated file's header
_CHUNK = 1 << 20
_UNREADABLE = (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, IndexError, zlib.error)


def _stop_at_pixels(tag, vr, length) -> bool:
    return int(tag) in _PIXEL_TAGS


def read_header(path: Path, fh: BinaryIO):
    """The data set up to its pixel data; ``fh`` is left at its start."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble

    try:
        fh.seek(0)
        read_preamble(fh, False)
        meta = _read_file_meta_info(fh)
        if str(meta.get("TransferSyntaxUID", "")) != DEFLATED:
            fh.seek(0)
            return pydicom.dcmread(fh, stop_before_pixels=True)
        body = fh.tell()
        _check_inflated_size(path, fh)
        fh.seek(body)
        inflater, prefix = zlib.decompressobj(-zlib.MAX_WBITS), bytearray()
        while len(prefix) < _HEADER_PREFIX and (chunk := fh.read(_CHUNK)):
            prefix += inflater.decompress(chunk, _HEADER_PREFIX - len(prefix))
        ds = read_dataset(io.BytesIO(bytes(prefix)), False, True, stop_when=_stop_at_pixels)
        ds.file_meta = meta
        return ds
    except (InvalidDicomError, *_UNREADABLE) as exc:
        raise ImageError(f"{path}: not a readable DICOM file ({exc})") from exc
    finally:
        fh.seek(0)


def _check_inflated_size(path: Path, fh: BinaryIO) -> None:
    """Inflate the rest of ``fh`` without keeping it; refused when it exceeds the bytes limit."""
    cap = int(limits.value(limits.BYTES)) + _HEADER_PREFIX
    inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
    while not inflater.eof and (chunk := fh.read(_CHUNK)):
        data = inflater.decompress(chunk, _CHUNK * 64)
        total += len(data)
        # Bounded output per call; stop at the stream's end or when a call makes no progress.
        while data and inflater.unconsumed_tail and not inflater.eof and total <= cap:
            data = inflater.decompress(inflater.unconsumed_tail, _CHUNK * 64)
            total += len(data)
        if total > cap:
            raise ImageError(
                f"{path}: image is too large to decode safely: its deflated data set inflates to more than "
                f"{cap:,} bytes (raise it with medclip {limits.BYTES.option} or {limits.BYTES.env})"
            )


def geometry(path: Path, header) -> ImageGeometry | None:
    """Rows, columns, frames and the bytes decoding holds, from a header without pixel data."""
    if "Rows" not in header or "Columns" not in header:
        return None
    try:
        rows, columns = int(header.Rows), int(header.Columns)
        frames = int(header.get("NumberOfFrames", 1) or 1)
        samples = int(header.get("SamplesPerPixel", 1) or 1)
        bits = int(header.get("BitsAllocated", 16) or 16)
    except (TypeError, ValueError) as exc:
        raise ImageError(f"{path}: not a readable DICOM file (bad image header: {exc})") from exc
    if frames < 1 or samples < 1 or bits < 1:
        raise ImageError(f"{path}: not a readable DICOM file (header gives {frames} frames, {samples} samples, {bits} bits)")
    pixels = rows * columns
    # All frames as stored are read into memory; one frame is decoded and converted to float64.
    stored = pixels * frames * samples * math.ceil(bits / 8)
    return ImageGeometry(columns, rows, frames, decoded_bytes=stored + pixels * (8 + samples))
