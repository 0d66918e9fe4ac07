"""Reading medical images as 8-bit RGB: PNG/JPEG/TIFF (8- and 16-bit), and DICOM.

Shared by every command: ``classify`` and the data sets call the same :func:`load_image`.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from medclip_cli.data import dicom_header, limits
from medclip_cli.data.limits import ImageGeometry
from medclip_cli.errors import ImageError, MedclipError
from medclip_cli.files import open_regular

DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
_HIGH_DEPTH_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}
_MODE_BYTES = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 4, "F": 4, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3}


def is_dicom(path: Path, fh: BinaryIO | None = None) -> bool:
    """DICOM by extension, or by the ``DICM`` magic at byte 128 (files often have no extension).

    Only a regular file is looked into (a pipe or device is not DICOM, and is never opened).
    """
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if fh is not None:
        fh.seek(128)
        magic = fh.read(4)
        fh.seek(0)
        return magic == b"DICM"
    try:
        with open_regular(path, ImageError, "image file") as own:
            return is_dicom(path, own)
    except (MedclipError, OSError):
        return False


def load_image(path: str | Path, *, window: Sequence[float] | None = None) -> Image.Image:
    """Read ``path`` as an 8-bit RGB image.

    High-bit-depth images are scaled by their real value range (PIL's own ``I;16`` to RGB
    conversion saturates), grayscale is repeated to 3 channels, EXIF orientation is applied.
    ``window`` = (center, width) applies to DICOM; by default the file's own window is used.
    Only a regular file is read (a pipe, device or socket is refused before it is opened), and its
    header is checked against :mod:`medclip_cli.data.limits` before any pixel is decoded.
    """
    path = Path(path)
    try:
        with open_regular(path, ImageError, "image file") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                raise ImageError(f"{path}: empty file (0 bytes)")
            if is_dicom(path, fh):
                return _load_dicom(path, fh, window)
            return _load_pil(path, fh)
    except MemoryError as exc:  # within the limits, but not within this machine's memory right now
        raise ImageError(f"{path}: not enough memory to decode this image", hint="lower the image limits") from exc


def load_image_bytes(name: str, data: bytes, *, window: Sequence[float] | None = None) -> Image.Image:
    """:func:`load_image` for an image held in memory (a tar member streamed from a shard):
    ``name`` names it in messages and, by its suffix or the DICOM magic, picks the decoder."""
    import io

    path = Path(name)
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    fh = io.BytesIO(data)
    try:
        if is_dicom(path, fh):
            return _load_dicom(path, fh, window)
        return _load_pil(path, fh)
    except MemoryError as exc:
        raise ImageError(f"{name}: not enough memory to decode this image", hint="lower the image limits") from exc


def _too_large(path: Path, geometry: ImageGeometry) -> None:
    why = limits.violation(geometry)
    if why is not None:
        raise ImageError(f"{path}: image is too large to decode safely: {why}")


def _load_pil(path: Path, fh: BinaryIO) -> Image.Image:
    max_pixels = limits.value(limits.PIXELS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # checked below, with a clearer message
            try:
                with Image.open(fh) as img:
                    # The header alone: nothing is decoded before the limits are checked.
                    mode_bytes = _MODE_BYTES.get(img.mode, 4)
                    _too_large(path, ImageGeometry(img.width, img.height, decoded_bytes=img.width * img.height * mode_bytes))
                    img.seek(0)  # first frame of animated GIF / multi-page TIFF
                    img.load()
                    img = ImageOps.exif_transpose(img)
                    return _to_rgb(img)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            f"{path}: image is too large to decode safely ({exc})",
            hint=f"images over {max_pixels:,} pixels are refused; raise it with medclip {limits.PIXELS.option}",
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
    """Min-max scale a 2-D array of any range to 8-bit and repeat it to RGB.

    The range is that of the finite values: one ``inf`` pixel (a float TIFF) does not blank the
    image; ``+inf`` shows as the brightest value, ``-inf`` and NaN as the darkest.
    """
    values = values.astype(np.float64, copy=False)
    finite = np.isfinite(values)
    if not finite.all():
        if not finite.any():
            values = np.zeros_like(values)
        else:
            lo, hi = float(values[finite].min()), float(values[finite].max())
            values = np.where(finite, values, np.where(values == np.inf, hi, lo))
    lo, hi = float(values.min()), float(values.max())
    scaled = np.zeros_like(values) if hi <= lo else (values - lo) * (255.0 / (hi - lo))
    gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


def _load_dicom(path: Path, fh: BinaryIO, window: Sequence[float] | None) -> Image.Image:
    import pydicom
    from pydicom.errors import InvalidDicomError

    unreadable = (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, IndexError)
    geometry = dicom_header.geometry(path, dicom_header.read_header(path, fh))  # nothing decoded yet
    if geometry is not None:
        _too_large(path, geometry)
    try:
        ds = pydicom.dcmread(fh)
    except unreadable as exc:
        raise ImageError(f"{path}: not a readable DICOM file ({exc})") from exc
    if "PixelData" not in ds:
        raise ImageError(f"{path}: DICOM file has no pixel data (not an image object)")
    try:
        if geometry is not None and geometry.frames > 1:  # decode the middle frame only
            from pydicom.pixels import pixel_array

            pixels = pixel_array(ds, index=geometry.frames // 2)
        else:
            pixels = ds.pixel_array
    except MemoryError:
        raise
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
        return Image.fromarray(_colour_to_uint8(pixels, ds)).convert("RGB")
    from pydicom.pixels import apply_modality_lut

    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    center_width = _dicom_window(ds, window)
    if center_width is not None:
        values = _apply_window(values, *center_width)
    image = gray_array_to_rgb(values) if center_width is None else _windowed_to_rgb(values)
    if photometric == "MONOCHROME1":  # high values are dark: invert for display
        image = Image.fromarray(255 - np.asarray(image))
    return image


def _colour_to_uint8(pixels: np.ndarray, ds) -> np.ndarray:
    """Colour samples scaled from their stored bit depth to 8 bits (16-bit RGB must not wrap)."""
    if pixels.dtype == np.uint8:
        return pixels
    try:
        bits = int(ds.get("BitsStored", 0) or 0) or 8 * pixels.dtype.itemsize
    except (TypeError, ValueError):
        bits = 8 * pixels.dtype.itemsize
    top = float(2 ** min(max(bits, 1), 8 * pixels.dtype.itemsize) - 1)
    scaled = np.asarray(pixels, dtype=np.float64) * (255.0 / top)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _dicom_window(ds, window: Sequence[float] | None) -> tuple[float, float] | None:
    if window is not None:
        center, width = float(window[0]), float(window[1])
        if not (math.isfinite(center) and math.isfinite(width) and width > 0):
            raise ImageError(f"window {center:g},{width:g}: the center and width must be finite and the width positive")
        return center, width
    if "WindowCenter" in ds and "WindowWidth" in ds:
        from pydicom.multival import MultiValue

        center, width = ds.WindowCenter, ds.WindowWidth
        # Multi-valued windows: the first is the one the modality suggests first.
        center = center[0] if isinstance(center, MultiValue) else center
        width = width[0] if isinstance(width, MultiValue) else width
        try:
            center, width = float(center), float(width)
        except (TypeError, ValueError):
            return None  # an unreadable window in the file: the image's own range is used
        if math.isfinite(center) and math.isfinite(width) and width > 0:
            return center, width
    return None


def _apply_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    # DICOM PS3.3 C.11.2.1.2 linear windowing, to the range [0, 1]; a width of 1 is a threshold.
    if width <= 1.0:
        return (values >= center - 0.5).astype(np.float64)
    return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def _windowed_to_rgb(values: np.ndarray) -> Image.Image:
    gray = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")
