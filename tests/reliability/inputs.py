"""Bad inputs, built in a case's own folder: images, data sets, archives, weights, plugins."""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

CSV_HEADER = "image,caption,modality,split"


def png(path: Path, seed: int = 0, size: tuple[int, int] = (40, 30)) -> Path:
    """A random RGB PNG of ``size`` (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def truncated_png(path: Path) -> Path:
    data = png(path, size=(64, 64)).read_bytes()
    return write(path, data[: len(data) // 2])


def huge_header_png(path: Path) -> Path:
    """A PNG whose IHDR claims 60,000 × 60,000 pixels (a decompression bomb, or a corrupt header)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 0, 0, 0, 0)
    return write(path, b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b""))


def png16(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50).save(path)
    return path


def cmyk_jpeg(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("CMYK", (40, 30), (10, 200, 30, 5)).save(path, "JPEG")
    return path


def palette_png_transparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("P", (40, 30), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    img.save(path, transparency=1)
    return path


def animated_gif(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [Image.new("L", (40, 30), v) for v in (0, 128, 255)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def _dicom(path: Path, *, pixels: bool, syntax: str) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    if pixels:
        from pydicom.encaps import encapsulate

        ds.Rows, ds.Columns = 16, 16
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\0" * 60])  # a JPEG 2000 code stream start
        ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def dicom_without_pixels(path: Path) -> Path:
    from pydicom.uid import ExplicitVRLittleEndian

    return _dicom(path, pixels=False, syntax=ExplicitVRLittleEndian)


def dicom_jpeg2000(path: Path) -> Path:
    """Compressed pixel data (JPEG 2000) that needs a decoder plugin pydicom does not have here."""
    return _dicom(path, pixels=True, syntax="1.2.840.10008.1.2.4.90")


def csv_set(root: Path, lines: list[str] | None = None, *, header: str = CSV_HEADER, name: str = "pairs.csv",
            images: int = 4, encoding: str = "utf-8", prefix: bytes = b"") -> Path:
    """``root/name`` listing ``images`` PNGs under root/img (or the ``lines`` given) with captions and labels."""
    for i in range(images):
        png(root / "img" / f"a{i}.png", seed=i)
    if lines is None:
        lines = [f"img/a{i}.png,scan number {i},{'CT' if i % 2 else 'MR'},train" for i in range(images)]
    text = "\n".join([header, *lines]) + "\n"
    return write(root / name, prefix + text.encode(encoding, errors="surrogateescape"))


def jsonl_set(root: Path, lines: list[str], images: int = 2) -> Path:
    for i in range(images):
        png(root / "img" / f"a{i}.png", seed=i)
    return write(root / "pairs.jsonl", "\n".join(lines) + "\n")


def medpix_set(root: Path, split: str = "test", records: list[dict] | None = None, *, n: int = 4,
               raw_lines: list[str] | None = None) -> Path:
    """A MedPix-2-0 layout with split ``split`` (one PNG per record, or the ``raw_lines`` given)."""
    base = root / "MedPix-2-0"
    (base / "splitted_dataset").mkdir(parents=True, exist_ok=True)
    if records is None:
        records = [{"image": f"MPX{i}_a", "modality": "CT" if i % 2 else "MR", "caption": f"case {i}"} for i in range(n)]
    lines = []
    for i, r in enumerate(records):
        if r.get("write", True):
            png(base / "images" / f"{r['image']}.png", seed=i)
        lines.append(json.dumps({
            "Type": r.get("modality"), "U_id": r["image"].split("_")[0], "image": r["image"],
            "Description": {"Caption": r.get("caption"), "Plane": "Axial"}, "Location": None,
            "Location Category": "Head",
        }))
    if raw_lines is not None:
        lines = raw_lines
    write(base / "splitted_dataset" / f"descriptions_{split}.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    return root


def zip_with(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def tar_with_symlink(link: str, target: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        info = tarfile.TarInfo("MedPix-2.0-main/README.md")
        body = b"MedPix"
        info.size = len(body)
        tf.addfile(info, io.BytesIO(body))
        sym = tarfile.TarInfo(link)
        sym.type, sym.linkname = tarfile.SYMTYPE, target
        tf.addfile(sym)
    return buffer.getvalue()


class _RunsCode:
    """Unpickling this calls ``open(marker, "w")``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pickle_that_runs_code(path: Path, marker: Path) -> Path:
    import pickle

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump({"state_dict": _RunsCode(marker)}, fh)
    return path


def corrupt_safetensors(path: Path) -> Path:
    """A safetensors file whose 8-byte header length points past the end of the file."""
    import struct

    return write(path, struct.pack("<Q", 10_000) + b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}')


def fake_plugin(site: Path, name: str, source: str) -> Path:
    """An installed distribution on ``site`` (module + dist-info with a ``medclip`` entry point)."""
    write(site / f"{name}.py", textwrap.dedent(source))
    info = site / f"{name}-0.1.dist-info"
    write(info / "METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    write(info / "entry_points.txt", f"[medclip]\n{name} = {name}\n")
    return site


#: The "billion laughs" XML: ten levels of ten-fold entity expansion (never expanded by medclip).
XML_ENTITY_BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
""" + "".join(
    f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 2 else "") + ";") * 10}">\n' for i in range(2, 11)
) + """]>
<eCitation><uId id="CXR12"/><AbstractText Label="FINDINGS">&lol10;</AbstractText></eCitation>
"""
