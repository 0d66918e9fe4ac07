"""Unpacking downloaded archives (zip, tar, tar.gz) safely and atomically.

Every member is checked before anything is written: absolute paths, ``..``, links and device
files make the whole archive refused, so nothing can land outside the target folder.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import IO, Callable, Iterator

from medclip_cli.atomic import match_umask, replace_dir
from medclip_cli.progress import NullProgress, ProgressReporter
from medclip_cli.errors import DataError

MAX_UNPACKED_BYTES = 64 * 1024**3  # refuse archives that claim to unpack to more (zip bombs)
_CHUNK = 1 << 20


def unpack(
    archive: Path,
    dest: Path,
    *,
    extra_files: dict[str, bytes | Callable[[], bytes]] | None = None,
    accept: Callable[[Path], bool] | None = None,
    what: str = "expected content",
    progress: ProgressReporter | None = None,
) -> None:
    """Unpack a zip or tar archive into ``dest`` atomically, refusing unsafe members.

    Members with absolute paths, ``..``, links or device files make the whole archive refused;
    nothing is written outside a temporary folder beside ``dest``, which replaces ``dest`` only
    when everything was unpacked and ``accept`` (if given) approves the content. A single
    top-level folder (GitHub's ``repo-main/``) is dropped; ``extra_files`` (name -> bytes) are
    added to the result, so they appear together with it.
    """
    progress = progress or NullProgress()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        with _open_archive(archive) as listing:
            members = list(listing)  # every member is checked before anything is written
            if sum(m[2] for m in members) > MAX_UNPACKED_BYTES:
                raise DataError(f"{archive}: would unpack to more than {MAX_UNPACKED_BYTES:,} bytes; refused")
            targets = [_safe_target(tmp, name, archive) for name, *_ in members]
            _check_clashes(archive, members, targets)
            task = progress.task("unpacking", total=len(members))
            for target, (name, is_dir, _, open_member) in zip(targets, members):
                if is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    _copy_member(archive, name, open_member, target)
                progress.advance(task)
            progress.done(task)
        entries = list(tmp.iterdir())
        content = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        if accept is not None and not accept(content):
            raise DataError(f"{archive}: holds no {what}; nothing was unpacked", hint="check the URL")
        for name, data in (extra_files or {}).items():
            (content / name).write_bytes(data() if callable(data) else data)  # a callable: made after accept
        match_umask(content, directory=True)  # mkdtemp's 0700 would hide the data set from colleagues
        replace_dir(content, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


Member = tuple[str, bool, int, Callable[[], IO[bytes]]]  # (name, is a folder, size, open for reading)


def _copy_member(archive: Path, name: str, open_member: Callable[[], IO[bytes]], target: Path) -> None:
    try:
        with open_member() as src, open(target, "xb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as exc:
        raise DataError(f"{archive}: member {name!r} is corrupt ({exc})", hint="delete it and download again") from exc
    except OSError as exc:
        raise DataError(
            f"{target}: cannot write ({exc.strerror or exc})", hint="check free space and permissions"
        ) from exc


class _open_archive:
    """Context manager listing an archive's members as :data:`Member` tuples, checked for safety."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = None

    def __enter__(self) -> Iterator[Member]:
        try:
            if zipfile.is_zipfile(self.path):
                self._handle = zipfile.ZipFile(self.path)
                return self._zip_members(self._handle)
            self._handle = tarfile.open(self.path, mode="r:*")
            return self._tar_members(self._handle)
        except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DataError(
                f"{self.path}: not a readable zip or tar archive ({exc})", hint="delete it and download again"
            ) from exc

    def __exit__(self, *exc_info) -> None:
        if self._handle is not None:
            self._handle.close()

    def _zip_members(self, zf: zipfile.ZipFile) -> Iterator[Member]:
        for info in zf.infolist():
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DataError(f"{self.path}: member {info.filename!r} is a symbolic link; archive refused")
            yield info.filename, info.is_dir(), info.file_size, (lambda info=info: zf.open(info))

    def _tar_members(self, tf: tarfile.TarFile) -> Iterator[Member]:
        try:
            for member in tf.getmembers():
                if member.issym() or member.islnk():
                    raise DataError(f"{self.path}: member {member.name!r} is a link; archive refused")
                if not (member.isfile() or member.isdir()):
                    raise DataError(f"{self.path}: member {member.name!r} is not a file or folder; archive refused")
                yield member.name, member.isdir(), member.size, (lambda m=member: tf.extractfile(m))
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(
                f"{self.path}: truncated or corrupt tar archive ({exc})", hint="delete it and download again"
            ) from exc


def _check_clashes(archive: Path, members: list, targets: list[Path]) -> None:
    """Two members for one path, or a file where another member needs a folder: refused by name."""
    kinds: dict[Path, tuple[str, bool]] = {}
    for (name, is_dir, *_), target in zip(members, targets):
        seen = kinds.get(target)
        if seen is not None and not (is_dir and seen[1]):
            raise DataError(f"{archive}: members {seen[0]!r} and {name!r} are the same path; archive refused")
        kinds[target] = (name, is_dir)
    for target, (name, is_dir) in kinds.items():
        for parent in target.parents:
            other = kinds.get(parent)
            if other is not None and not other[1]:
                raise DataError(f"{archive}: member {name!r} lies inside the file {other[0]!r}; archive refused")


def _safe_target(root: Path, name: str, archive: Path) -> Path:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts or "\0" in name:
        raise DataError(f"{archive}: member {name!r} would be written outside the target folder; archive refused")
    target = Path(os.path.normpath(root.joinpath(*[p for p in parts if p not in ("", ".")])))
    if target != root and root not in target.parents:
        raise DataError(f"{archive}: member {name!r} would be written outside the target folder; archive refused")
    return target
