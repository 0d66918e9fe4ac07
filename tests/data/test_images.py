"""Image decoding for medical files: 16-bit range, DICOM LUT/window/MONOCHROME1, broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medclip_cli.data import Dataset, Sample
from medclip_cli.data.images import load_image
from medclip_cli.data.pixels import load_pixels
from medclip_cli.data.preprocess import PreprocessConfig
from medclip_cli.errors import DataError, ImageError

from .conftest import write_png


def write_dicom(path: Path, raw: np.ndarray, *, photometric: str = "MONOCHROME2", window=(40.0, 400.0)) -> Path:
    """A CT-like 16-bit DICOM file: stored value - 1024 = Hounsfield units."""
    from pydicom.dataset import Dataset as DicomDataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = DicomDataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = raw.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = raw.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_png_and_tiff_use_their_real_range(tmp_path, suffix):
    values = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    path = tmp_path / f"x16{suffix}"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    gray = np.asarray(load_image(path))[..., 0]
    np.testing.assert_array_equal(gray, np.rint(values / 4000 * 255).astype(np.uint8))
    # PIL's own conversion saturates everything above 255 to white.
    assert (np.asarray(Image.open(path).convert("RGB"))[..., 0] == 255).sum() == 3


def test_dicom_applies_rescale_and_window(tmp_path):
    hu = np.array([[-1000, -160], [40, 240]])  # air, window bottom, window centre, window top
    path = write_dicom(tmp_path / "ct", hu + 1024)  # no extension: found by the DICM magic
    gray = np.asarray(load_image(path))[..., 0]
    assert gray[0, 0] == 0 and gray[0, 1] == 0
    assert abs(int(gray[1, 0]) - 128) <= 1
    assert gray[1, 1] == 255
    wide = np.asarray(load_image(path, window=(-300, 1400)))[..., 0]
    assert 0 < wide[0, 1] < wide[1, 0] < 255


def test_dicom_monochrome1_is_inverted(tmp_path):
    raw = np.array([[0, 100], [200, 300]]) + 1024
    normal = np.asarray(load_image(write_dicom(tmp_path / "a.dcm", raw, window=None)))
    inverted = np.asarray(load_image(write_dicom(tmp_path / "b.dcm", raw, photometric="MONOCHROME1", window=None)))
    np.testing.assert_array_equal(inverted, 255 - normal)


def test_broken_files_raise_one_line_image_errors(tmp_path):
    good = write_png(tmp_path / "good.png", 1, size=(64, 64))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:200])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("hello")
    for path, message in [
        (truncated, "corrupt or truncated image"),
        (empty, r"empty file \(0 bytes\)"),
        (tmp_path / "missing.png", "no such image file"),
        (text, "not a readable image"),
    ]:
        with pytest.raises(ImageError, match=message) as info:
            load_image(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_load_pixels_skips_broken_images_or_stops_with_strict(tmp_path):
    good = write_png(tmp_path / "good.png", 1, size=(64, 48))
    truncated = tmp_path / "bad.png"
    truncated.write_bytes(good.read_bytes()[:150])
    samples = [Sample("good", good, "c"), Sample("bad", truncated, "c"), Sample("gone", tmp_path / "gone.png", "c")]
    ds = Dataset("test", tmp_path, "all", samples, {})
    cfg = PreprocessConfig(image_size=32)
    for cache in (False, True):
        pixels = load_pixels(ds, cfg, cache=cache)
        assert pixels.indices == [0] and pixels.array.shape == (1, 32, 32, 3)
        assert [sid for sid, _ in pixels.skipped] == ["bad", "gone"]
        assert str(truncated) in pixels.skipped[0][1]
        with pytest.raises(DataError, match="bad.png: corrupt or truncated"):
            load_pixels(ds, cfg, strict=True, cache=cache)
