"""The MedPix 2.0 release ``medclip data download medpix2`` takes by default: a commit and its content.

The repository's ``main`` branch moves, and GitHub builds its zip archives on the fly (their bytes
are not promised to stay the same), so the pin is the commit and the sha256 of what the archive
unpacks to: :func:`content_sha256`, a digest of every file's sha256 and path. Anyone can
recompute it from a clone: ``git archive COMMIT | tar x`` and the same digest of the files.
A newer revision is taken only when asked for (``--revision main`` or another commit).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

MEDPIX_REPOSITORY = "CHILab1/MedPix-2.0"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class DataPin:
    """A data set release: the repository's commit and the sha256 of its unpacked files."""

    repository: str
    commit: str
    content_sha256: str

    def archive_url(self, revision: str | None = None) -> str:
        return archive_url(self.repository, revision or self.commit)


#: MedPix 2.0 at its commit of 2026-04-24 (2,088 files: 2,050 images, the JSON records and splits).
MEDPIX_PIN = DataPin(
    MEDPIX_REPOSITORY,
    commit="d3bc431576ec8041114806ec3eb58d75adf45029",
    content_sha256="aed45fc04385bed7f47384ece7ea503f457a8b441b8c7439f1be8e57803acaff",
)


def archive_url(repository: str, revision: str) -> str:
    """GitHub's zip of ``repository`` at ``revision`` (a commit, tag or branch)."""
    return f"https://codeload.github.com/{repository}/zip/{revision}"


def content_sha256(root: Path, *, exclude: frozenset[str] = frozenset()) -> str:
    """sha256 of the lines ``<file sha256>  <path>`` (sorted by path, ``/`` separators) of every file
    under ``root``; top-level names in ``exclude`` are left out (medclip's own download record)."""
    lines = []
    for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root).as_posix()
        if rel in exclude or not path.is_file():
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        lines.append(f"{digest.hexdigest()}  {rel}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()
