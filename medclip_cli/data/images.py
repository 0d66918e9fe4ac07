"""Reading medical images as 8-bit RGB: PNG/JPEG/TIFF (8- and 16-bit), and DICOM.

Shared by every command: ``classify`` and the data sets call the same :func:`load_image`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from medclip_cli.errors import ImageError

#: Refuse images with more pixels than this (a decompression bomb, or a corrupt header).
MAX_IMAGE_PIXELS = 120_000_000
DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
_HIGH_DEPTH_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}


def is_dicom(path: Path) -> bool:
    """DICOM by extension, or by the ``DICM`` magic at byte 128 (files often have no extension)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def load_image(path: str | Path, *, window: Sequence[float] | None = None) -> Image.Image:
    """Read ``path`` as an 8-bit RGB image.

    High-bit-depth images are scaled by their real value range (PIL's own ``I;16`` to RGB
    conversion saturates), grayscale is repeated to 3 channels, EXIF orientation is applied.
    ``window`` = (center, width) applies to DICOM; by default the file's own window is used.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such image file", hint="check the path")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    if is_dicom(path):
        return _load_dicom(path, window)
    return _load_pil(path)


def _load_pil(path: Path) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS
            try:
                with Image.open(path) as img:
                    img.seek(0)  # first frame of animated GIF / multi-page TIFF
                    img.load()
                    img = ImageOps.exif_transpose(img)
                    return _to_rgb(img)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            f"{path}: image is too large to decode safely ({exc})",
            hint=f"images over {MAX_IMAGE_PIXELS:,} pixels are refused",
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path}: not a readable image (unknown or corrupt format)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{path}: corrupt or truncated image ({exc})") from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in _HIGH_DEPTH_MODES:
        return gray_array_to_rgb(np.asarray(img, dtype=np.float64))
    if img.mode in ("P", "PA", "LA", "RGBA", "La", "RGBa"):
        # Transparent regions go to black, like the background of a radiograph.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def gray_array_to_rgb(values: np.ndarray) -> Image.Image:
    """Min-max scale a 2-D array of any range to 8-bit and repeat it to RGB."""
    values = np.nan_to_num(values.astype(np.float64, copy=False))
    lo, hi = float(values.min()), float(values.max())
    scaled = np.zeros_like(values) if hi <= lo else (values - lo) * (255.0 / (hi - lo))
    gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


def _load_dicom(path: Path, window: Sequence[float] | None) -> Image.Image:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise ImageError(f"{path}: not a readable DICOM file ({exc})") from exc
    if "PixelData" not in ds:
        raise ImageError(f"{path}: DICOM file has no pixel data (not an image object)")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises RuntimeError/NotImplementedError for missing decoders
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise ImageError(
            f"{path}: cannot decode DICOM pixel data (transfer syntax {syntax}): {exc}",
            hint="install pydicom's decoders for compressed DICOM: `pip install \"pylibjpeg[all]\" pyjpegls`",
        ) from exc
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if pixels.ndim == 4 or (pixels.ndim == 3 and photometric.startswith("MONOCHROME")):
        pixels = pixels[len(pixels) // 2]  # multi-frame: the middle frame
    if pixels.ndim == 3:  # colour DICOM (RGB/YBR already converted by pydicom)
        return Image.fromarray(np.asarray(pixels, dtype=np.uint8)).convert("RGB")
    from pydicom.pixels import apply_modality_lut

    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    center_width = _dicom_window(ds, window)
    if center_width is not None:
        values = _apply_window(values, *center_width)
    image = gray_array_to_rgb(values) if center_width is None else _windowed_to_rgb(values)
    if photometric == "MONOCHROME1":  # high values are dark: invert for display
        image = Image.fromarray(255 - np.asarray(image))
    return image


def _dicom_window(ds, window: Sequence[float] | None) -> tuple[float, float] | None:
    if window is not None:
        center, width = window
        return float(center), float(width)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        from pydicom.multival import MultiValue

        center, width = ds.WindowCenter, ds.WindowWidth
        # Multi-valued windows: the first is the one the modality suggests first.
        center = center[0] if isinstance(center, MultiValue) else center
        width = width[0] if isinstance(width, MultiValue) else width
        if float(width) > 0:
            return float(center), float(width)
    return None


def _apply_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    # DICOM PS3.3 C.11.2.1.2 linear windowing, to the range [0, 1].
    width = max(width, 1.0)
    return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def _windowed_to_rgb(values: np.ndarray) -> Image.Image:
    gray = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")
