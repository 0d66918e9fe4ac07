"""Writing a file so that readers see the old file or the complete new one, never a part."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (read by setting and restoring it; a lock keeps threads from racing)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def match_umask(path: str | Path, *, directory: bool = False) -> None:
    """Give a file (or folder) made by mkstemp/mkdtemp the mode the umask gives a new one."""
    # mkstemp/mkdtemp create 0600/0700 whatever the umask; a file written in place would have got
    # 0666/0777 less the umask, and colleagues on a shared server must be able to read results.
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", *, fsync: bool = False, **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        match_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str, *, fsync: bool = False) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` through :func:`atomic_open`."""
    with atomic_open(path, "w", fsync=fsync, encoding="utf-8", newline="") as fh:
        fh.write(text)
    return Path(path)


def replace_dir(new: Path, target: Path) -> None:
    """Move the finished folder ``new`` to ``target``, swapping an existing ``target`` out first."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """A fresh temporary folder beside ``target`` to build a folder in: on success it replaces
    ``target`` (:func:`replace_dir`); on any error it is removed and ``target`` is left as it was."""
    target = Path(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        match_umask(tmp, directory=True)
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_png(figure, path: str | Path) -> Path:
    """A matplotlib figure written atomically as ``path`` (PNG, 100 dpi)."""
    path = Path(path)
    with atomic_open(path) as fh:
        figure.savefig(fh, format="png", dpi=100)
    return path
