"""How big an image may be before it is decoded: pixels, aspect ratio, frames and decoded bytes.

Every command reads images through :func:`medclip_cli.data.images.load_image`, which checks the
file's header against these limits *before* decoding, so a 20 KB file that would decode to
30 GB is refused by name instead of exhausting memory. The limits come from environment
variables (so worker processes see the same ones); ``medclip --max-image-pixels N COMMAND`` and
its siblings set them for one command.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from medclip_cli.errors import UsageError


@dataclass(frozen=True)
class Limit:
    env: str
    option: str
    default: float
    what: str
    integer: bool = True


PIXELS = Limit("MEDCLIP_MAX_IMAGE_PIXELS", "--max-image-pixels", 50_000_000, "pixels per frame")
ASPECT = Limit("MEDCLIP_MAX_IMAGE_ASPECT", "--max-image-aspect", 50.0, "long side / short side", integer=False)
FRAMES = Limit("MEDCLIP_MAX_IMAGE_FRAMES", "--max-image-frames", 1_000, "frames of a multi-frame DICOM")
BYTES = Limit("MEDCLIP_MAX_IMAGE_BYTES", "--max-image-bytes", 1 << 30, "bytes of decoded pixel data")
ALL = (PIXELS, ASPECT, FRAMES, BYTES)


def parse(limit: Limit, text: str) -> float:
    """A limit's value from text (``2e8`` allowed); a :class:`UsageError` naming the option if bad."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < (1 if limit.integer else 1.0):
        raise UsageError(f"{limit.option} / {limit.env} {text!r}: expected a positive number", hint=limit.what)
    return int(value) if limit.integer else value


def value(limit: Limit) -> float:
    """The limit in force: its environment variable, else its default."""
    text = os.environ.get(limit.env, "").strip()
    return limit.default if not text else parse(limit, text)


@dataclass(frozen=True)
class ImageGeometry:
    """What a header says about an image, before any pixel is decoded."""

    width: int
    height: int
    frames: int = 1  # frames in the file (medclip decodes one: the first, or a DICOM's middle one)
    decoded_bytes: int | None = None  # memory decoding holds (None: 4 bytes per pixel)


def violation(geometry: ImageGeometry) -> str | None:
    """Why an image of ``geometry`` is too large to decode, or None when it is within every limit."""
    w, h = geometry.width, geometry.height
    if w < 1 or h < 1:
        return f"its header gives {w}x{h} pixels"
    pixels = w * h
    if pixels > value(PIXELS):
        return _over(f"{w:,}x{h:,} = {pixels:,} pixels", PIXELS)
    if max(w, h) / min(w, h) > value(ASPECT):
        return _over(f"{w:,}x{h:,} has an aspect ratio of {max(w, h) / min(w, h):,.0f}:1", ASPECT)
    if geometry.frames > value(FRAMES):
        return _over(f"{geometry.frames:,} frames", FRAMES)
    decoded = pixels * 4 if geometry.decoded_bytes is None else geometry.decoded_bytes
    if decoded > value(BYTES):
        return _over(f"{decoded:,} bytes decoded", BYTES)
    return None


def _over(what: str, limit: Limit) -> str:
    shown = f"{value(limit):,}" if limit.integer else f"{value(limit):g}"
    return f"{what}, over the limit of {shown} (raise it with medclip {limit.option} or {limit.env})"
