"""Opening an input file only when it is a regular file: never a pipe, device, socket or /proc entry.

A FIFO or ``/dev/zero`` behind an image or manifest path would hang a run or fill its memory, and
``/proc/self/environ`` would put the environment into an error message. :func:`open_regular` looks
before it opens (``stat``), opens without blocking, and checks again what it opened (``fstat``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from medclip_cli.errors import MedclipError

# Kernel file systems whose "regular files" are generated on read (and may hold secrets).
_VIRTUAL_ROOTS = ("/proc", "/sys", "/dev")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_regular(path: str | Path, error: type[MedclipError], what: str = "file") -> os.stat_result:
    """``stat`` of ``path`` when it is a regular file that can be read; else ``error`` naming it."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}", hint="check the path") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: is a folder, not {_article(what)}")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: is {_kind(st.st_mode)}, not a regular file; refused", hint=f"give a path to {_article(what)}")
    real = os.path.realpath(path)
    if any(real == root or real.startswith(root + "/") for root in _VIRTUAL_ROOTS):
        raise error(f"{path}: is a kernel file ({real}), not a regular file; refused", hint=f"give a path to {_article(what)}")
    return st


def open_regular(path: str | Path, error: type[MedclipError], what: str = "file") -> BinaryIO:
    """Open ``path`` for binary reading, only when it is (and stays) a regular file."""
    before = check_regular(path, error, what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise error(f"{path}: changed while being opened (now {_kind(st.st_mode)}); refused")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_regular(path: str | Path, error: type[MedclipError], what: str = "file", *, limit: int | None = None) -> bytes:
    """The bytes of a regular file; more than ``limit`` bytes is refused before reading."""
    with open_regular(path, error, what) as fh:
        size = os.fstat(fh.fileno()).st_size
        if limit is not None and size > limit:
            raise error(f"{path}: {size:,} bytes, more than the limit of {limit:,} for {_article(what)}; refused")
        data = fh.read() if limit is None else _read_at_most(fh, limit + 1, size)
    if limit is not None and len(data) > limit:
        raise error(f"{path}: more than the limit of {limit:,} bytes for {_article(what)}; refused")
    return data


def _read_at_most(fh, n: int, size: int = 0) -> bytes:
    """Up to ``n`` bytes, in pieces no larger than what is left of the ``size`` fstat gave (then
    64 KiB, for a file that grew): ``fh.read(n)`` reserves all ``n`` bytes at once (4 GiB for a
    manifest's limit, whatever the file's size), which fails under an address-space limit, and
    even 16 MiB pieces reserve ten times a small manifest."""
    chunks, got = [], 0
    while got < n:
        chunk = fh.read(min(n - got, 1 << 24, max(size - got, 1 << 16)))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _article(what: str) -> str:
    return f"an {what}" if what[:1] in "aeiou" else f"a {what}"


def file_sha256(path: str | Path) -> str | None:
    """sha256 of a regular file's bytes (hex), or None when it cannot be read; a pipe or device
    is never read."""
    import hashlib

    from medclip_cli.errors import ImageError

    digest = hashlib.sha256()
    try:
        with open_regular(path, ImageError, "image file") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except (OSError, ImageError):
        return None
    return digest.hexdigest()
