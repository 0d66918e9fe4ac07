"""One process at a time per output folder: an OS lock held for the whole run.

``medclip finetune``, ``evaluate --output`` and ``reproduce`` take :func:`hold` on their output
folder before they write anything to it. The lock is ``fcntl.flock`` on ``.medclip-lock`` inside
the folder, so the kernel frees it when the holder exits or dies (SIGKILL included): there is no
stale lock to clean up. The file records who holds it (pid, host, start time, command), and a
second process is refused with one line naming that holder.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from medclip_cli.errors import OutputError

LOCK_NAME = ".medclip-lock"


def _holder_text(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or not info:
        return "another process"
    command = " ".join(str(info.get("command", "?")).split())[:120]
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}: {command}"


def _command() -> str:
    argv = [os.path.basename(sys.argv[0]) or "medclip", *sys.argv[1:]]
    return " ".join(argv)


class RunLock:
    """The lock on one folder; :meth:`release` (or process exit) frees it."""

    def __init__(self, folder: Path, fd: int, created: Path | None = None) -> None:
        self.folder, self.fd = folder, fd
        self.created = created  # the top-most folder acquire created; removed again if left empty

    @property
    def path(self) -> Path:
        return self.folder / LOCK_NAME

    def release(self, *, remove: bool = True) -> None:
        if self.fd < 0:
            return
        import fcntl

        if remove:  # unlinked while still held: a waiting opener re-checks the inode (see acquire)
            try:
                self.path.unlink()
            except OSError:
                pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = -1
        if remove and self.created is not None:  # a run refused before writing leaves no folder behind
            _remove_empty(self.folder, self.created)


def _remove_empty(folder: Path, top: Path) -> None:
    """``folder`` and its parents up to ``top`` (inclusive), as long as each is empty."""
    while True:
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == top or folder.parent == folder:
            return
        folder = folder.parent


def acquire(folder: str | Path, what: str = "--output") -> RunLock:
    """Lock ``folder`` (created if needed) for this process, or raise :class:`OutputError` naming the holder."""
    import fcntl

    folder = Path(folder)
    created = None
    missing = folder
    while not missing.exists() and missing.parent != missing:
        created, missing = missing, missing.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{what} {folder}: cannot create the folder ({exc.strerror or exc})") from exc
    path = folder / LOCK_NAME
    for _ in range(20):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            raise OutputError(f"{what} {folder}: cannot lock the folder ({exc.strerror or exc})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_text(fd)
            os.close(fd)
            raise OutputError(
                f"{what} {folder}: in use by another medclip run ({holder})",
                hint="wait for it to finish, or choose another folder",
            ) from None
        try:  # the file we locked must still be the one at the path (a releaser may have unlinked it)
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except OSError:
            same = False
        if not same:
            os.close(fd)
            continue
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}  # fmt: skip
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(record).encode())
        return RunLock(folder, fd, created)
    raise OutputError(f"{what} {folder}: cannot lock the folder (it keeps changing)")


@contextmanager
def hold(folder: str | Path, what: str = "--output") -> Iterator[RunLock]:
    """Hold the folder's lock for the ``with`` block."""
    lock = acquire(folder, what)
    try:
        yield lock
    finally:
        lock.release()
