"""The one reader of a WebDataset tar shard's members, with every check, for both ways shards are read.

The cached path (:func:`medclip_cli.data.shards.load`: images unpacked into the shard cache, for
``finetune``/``evaluate``/``embed``/``data check`` without ``--stream``) and the streamed path
(:mod:`medclip_cli.data.shard_stream`, ``finetune --stream``) both take a shard's members from
:func:`read_members`, so a hostile shard gets the same message on both:

- only regular files are read: a symlink, hard link, device, FIFO member (whatever it names) is
  never followed or created; its sample is skipped, saying so (directories are ignored);
- a member name with a ``..`` component or an absolute path skips its sample (nothing is ever
  written under a member's name, but such a tar was not written for medclip);
- an image member over ``--max-image-bytes``, a ``.txt``/``.json`` member over the caption limit
  (:data:`MAX_TEXT_BYTES`), is skipped without being read into memory;
- a tar that cannot be opened, that is cut off inside a member (``tarfile`` reads it short,
  quietly) or between members, raises :class:`BrokenShard` after the members read before it.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from medclip_cli.data import limits
from medclip_cli.data.folder import IMAGE_SUFFIXES
from medclip_cli.data.manifest_read import MAX_FIELD_CHARS
from medclip_cli.errors import DataError
from medclip_cli.redact import excerpt

TEXT_EXTS = ("txt", "json")
# A caption may hold MAX_FIELD_CHARS characters, as in a manifest: at most 4 bytes each in UTF-8.
MAX_TEXT_BYTES = 4 * MAX_FIELD_CHARS
_BROKEN = (tarfile.TarError, OSError, EOFError, UnicodeDecodeError)
_REMAKE = "re-create the shard (medclip data shard) or remove it"
_SKIPPED = "sample skipped (re-create the shard with medclip data shard)"


class BrokenShard(DataError):
    """A shard that cannot be opened or breaks off: ``key`` the sample of the member it broke in
    (None: between members or at the end, after every member yielded)."""

    def __init__(self, tar: Path, reason: str, key: str | None = None) -> None:
        super().__init__(f"{tar}: not a readable tar shard ({reason})", hint=_REMAKE)
        self.reason, self.key = reason, key


@dataclass(frozen=True)
class Member:
    """One member of a sample: its bytes, or (``data`` None) why it was not read."""

    key: str
    ext: str  # lower case, without the dot: "png", "seg.png", "txt"
    data: bytes | None
    problem: str | None = None  # "<shard>: member '<name>': why; skipped"


def sample_key(name: str) -> tuple[str, str]:
    """A member's (sample key, lower-case extension): ``a/b/0001.seg.png`` -> (``a/b/0001``, ``seg.png``)."""
    base = name.rsplit("/", 1)[-1]
    stem, _, ext = base.partition(".")
    prefix = name[: len(name) - len(base)]
    return prefix + stem, ext.lower()


def is_image(ext: str) -> bool:
    return f".{ext}" in IMAGE_SUFFIXES


def wanted(ext: str) -> bool:
    """Members a sample is made of: its image and its ``.txt``/``.json``; the rest is not read."""
    return is_image(ext) or ext in TEXT_EXTS


def read_members(tar: Path, read_images: bool = True) -> Iterator[Member]:
    """The wanted members of ``tar`` in order, each read and checked (see the module doc).
    ``read_images=False`` checks image members but leaves their bytes unread (``data`` None)."""
    try:
        size = None if compressed(tar) else tar.stat().st_size
        with tarfile.open(tar, mode="r|*") as archive:
            for member in archive:
                if member.isdir():
                    continue
                key, ext = sample_key(member.name)
                if not wanted(ext):
                    continue
                problem = _problem(tar, member, ext)
                if problem is not None:
                    yield Member(key, ext, None, problem)
                    continue
                if size is not None and member.offset_data + member.size > size:  # cut off inside it
                    raise BrokenShard(tar, f"truncated in member {excerpt(member.name)!r}", key)
                if not read_images and is_image(ext):
                    yield Member(key, ext, None)
                    continue
                data = archive.extractfile(member).read()
                if len(data) != member.size:  # a cut-off compressed tar reads short, quietly
                    raise BrokenShard(tar, f"truncated in member {excerpt(member.name)!r}", key)
                yield Member(key, ext, data)
            if size is not None:  # a compressed tar's offsets are not the file's
                check_end(tar, archive)
    except BrokenShard:
        raise
    except _BROKEN as exc:
        raise BrokenShard(tar, str(exc) or type(exc).__name__) from exc


def _problem(tar: Path, member: tarfile.TarInfo, ext: str) -> str | None:
    where = f"{tar}: member {excerpt(member.name)!r}"
    if not member.isfile():
        kind = "a symbolic link" if member.issym() else "a hard link" if member.islnk() else "not a regular file"
        return f"{where}: {kind} in the tar, not read; {_SKIPPED}"
    parts = member.name.split("/")
    if member.name.startswith("/") or ".." in parts:
        return f"{where}: an absolute member name or one with '..'; {_SKIPPED}"
    if is_image(ext) and member.size > limits.value(limits.BYTES):  # never read into memory
        return f"{where}: {member.size:,} bytes, over {limits.BYTES.option}; skipped"
    if ext in TEXT_EXTS and member.size > MAX_TEXT_BYTES:
        return f"{where}: {member.size:,} bytes, over the {MAX_TEXT_BYTES:,}-byte limit of a caption member; skipped"
    return None


def caption_problem(where: str, caption: str | None) -> str | None:
    """Why a sample's caption is refused (longer than a manifest's field limit), or None."""
    if caption is not None and len(caption) > MAX_FIELD_CHARS:
        return f"{where}: a caption of {len(caption):,} characters, over the limit of {MAX_FIELD_CHARS:,}; skipped"
    return None


def compressed(tar: Path) -> bool:
    """Whether ``tar`` is gzip, bzip2 or xz compressed (tarfile reads it as it is)."""
    with open(tar, "rb") as fh:
        return fh.read(6).startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ"))  # gzip, bzip2, xz


def check_end(tar: Path, archive: tarfile.TarFile) -> None:
    """A tar cut off between members or inside a header ends tarfile's iteration without an error:
    after the last member, an uncompressed tar (only: ``archive``'s offsets are the file's) holds
    zero blocks and nothing else."""
    with open(tar, "rb") as fh:
        fh.seek(archive.offset)
        tail = fh.read(1 << 20)
        if not tail or tail.strip(b"\0"):  # every writer ends a tar with zero blocks
            raise tarfile.ReadError(f"cut off after byte {archive.offset}")

