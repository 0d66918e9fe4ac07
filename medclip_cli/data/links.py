"""Image names judged as written, not where a symbolic link resolves.

Data sets managed by DataLad, git-annex or DVC keep every image as a link into an object store
(``images/a.png -> ../.git/annex/objects/...``). Resolving the link and then asking whether it
is still inside ``images/`` refuses every such image; the name is what a data file controls, so
the name is checked (no ``..``, no absolute path, no separator where a bare name is expected).
A link that leads nowhere (not fetched yet, or a loop) is a skipped image with its reason.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


def bare_name_problem(name: str) -> str | None:
    """Why ``name`` is not a plain file name (a path, ``..``, empty), or None when it is one."""
    if not name.strip():
        return "is empty"
    if "\0" in name:
        return "holds a NUL character"
    if "/" in name or "\\" in name:
        return "holds a path separator (a bare file name is expected)"
    if name in (".", ".."):
        return f"is {name!r}"
    return None


def broken_link_reason(path: "Path | str") -> str | None:
    """Why the symbolic link ``path`` cannot be read (dangling, a loop), or None (not a link, or fine)."""
    try:
        if not os.path.islink(path):
            return None
        os.stat(path)
    except OSError as exc:
        name = os.path.basename(os.path.normpath(path))
        if exc.errno == errno.ELOOP:
            return f"{name}: symbolic link loop; skipped"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            target = os.readlink(path)
            return (
                f"{name}: dangling symbolic link (to {target}); skipped "
                "(in a DataLad/git-annex data set, fetch the content first: `datalad get` or `git annex get`)"
            )
        return f"{name}: unreadable symbolic link ({exc.strerror}); skipped"
    return None
