"""Hostile WebDataset shards for the reliability cases: a good shard set with one bad member added
(a link, a device, a ``..`` or absolute name, a member over a limit) or cut off mid-member."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np

GOOD = 4  # samples of the good part of each shard
LINKS = {
    "symlink": (tarfile.SYMTYPE, "/etc/passwd"),
    "hardlink": (tarfile.LNKTYPE, "000001.png"),
    "device": (tarfile.CHRTYPE, ""),
    "fifo": (tarfile.FIFOTYPE, ""),
}

_SKIPPED = "sample skipped (re-create the shard"
CUT = "not a readable tar shard (truncated in member 'cut.png')"
# (kind, the input in words, the line every path shows, extra global options)
KINDS = [
    ("symlink", "a symlink member evil.png -> /etc/passwd", "member 'evil.png': a symbolic link in the tar, not read; " + _SKIPPED, []),
    ("hardlink", "a hard-link member evil.png -> 000001.png", "member 'evil.png': a hard link in the tar, not read; " + _SKIPPED, []),
    ("device", "a character-device member evil.png (1, 3)", "member 'evil.png': not a regular file in the tar, not read; " + _SKIPPED, []),
    ("fifo", "a FIFO member evil.png", "member 'evil.png': not a regular file in the tar, not read; " + _SKIPPED, []),
    ("dotdot", "members named ../../pwned.png and .txt", "member '../../pwned.png': an absolute member name or one with '..'; " + _SKIPPED, []),
    ("absolute", "members named /tmp/medclip-pwned.png and .txt", "member '/tmp/medclip-pwned.png': an absolute member name or one with '..'", []),
    ("big-image", "an image member of 20 KB under --max-image-bytes 10000", "member 'big.png': 20,", ["--max-image-bytes", "10000"]),
    ("big-caption", "a .txt member of 4,000,001 bytes (over the caption limit)",
     "member 'long.txt': 4,000,001 bytes, over the 4,000,000-byte limit of a caption member; skipped", []),
]


def png_bytes(seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _add(archive: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3  # /dev/null's numbers
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _good(archive: tarfile.TarFile) -> None:
    for k in range(GOOD):
        _add(archive, f"{k:06d}.png", png_bytes(k))
        meta = {"caption": f"scan number {k}", "labels": {"modality": "CT" if k % 2 else "MR"}}
        _add(archive, f"{k:06d}.json", json.dumps(meta).encode())


def shard_set(root: Path, bad: str) -> Path:
    """``root/train`` and ``root/test``, each one shard ``00000.tar``: the ``bad`` sample (a
    ``LINKS`` kind, ``dotdot``, ``absolute``, ``big-image``, ``big-caption``) then the good ones,
    or (``truncated``) the good ones then one cut off inside its member; with ``sizes.json`` as
    ``data shard`` writes."""
    for split in ("train", "test"):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        tar = folder / "00000.tar"
        with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as archive:
            if bad == "truncated":
                _good(archive)
            if bad in LINKS:
                kind, link = LINKS[bad]
                _add(archive, "evil.png", kind=kind, link=link)
                _add(archive, "evil.txt", b"a caption")
            elif bad in ("dotdot", "absolute"):
                name = "../../pwned" if bad == "dotdot" else "/tmp/medclip-pwned"
                _add(archive, f"{name}.png", png_bytes(99))
                _add(archive, f"{name}.txt", b"a caption")
            elif bad == "big-image":
                _add(archive, "big.png", png_bytes(98) + b"\0" * 20_000)
                _add(archive, "big.txt", b"a caption")
            elif bad == "big-caption":
                from medclip_cli.data.tar_members import MAX_TEXT_BYTES

                _add(archive, "long.png", png_bytes(97))
                _add(archive, "long.txt", b"a" * (MAX_TEXT_BYTES + 1))
            elif bad == "truncated":
                _add(archive, "cut.png", png_bytes(96) + b"\0" * 4096)
            else:
                raise ValueError(bad)
            if bad != "truncated":
                _good(archive)
        if bad == "truncated":  # cut inside the last member's data
            data = tar.read_bytes()
            tar.write_bytes(data[: data.rfind(b"IEND") - 100])
        samples = GOOD + (bad not in ("truncated",))
        (folder / "sizes.json").write_text(json.dumps({"00000.tar": samples}))
    return root
