"""The one data-set interface every command reads through."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from medclip_cli.data.labels import LabelField


class Sample:
    """One image with its caption (may be None) and raw label values; read-only.

    Small, because a split may hold millions: slots, the image path kept as a string (``image``
    builds a Path when asked), and with ``folder`` the path stored as a name relative to a folder
    string the rows of a split share (``id`` may be that very name, so it costs nothing more).
    ``labels`` may be shared between samples with the same values: never mutate it.
    """

    __slots__ = ("id", "_folder", "_name", "caption", "labels")

    def __init__(
        self,
        id: str,
        image: "Path | str",
        caption: str | None,
        labels: Mapping[str, str] | None = None,
        *,
        folder: str | None = None,
    ) -> None:
        name = image if folder is not None else os.fspath(image) if isinstance(image, Path) else str(Path(image))
        for key, value in (("id", id), ("_folder", folder), ("_name", name), ("caption", caption)):
            object.__setattr__(self, key, value)
        object.__setattr__(self, "labels", {} if labels is None else labels)

    @property
    def path(self) -> str:
        """The image's path as a string (what ``image`` wraps)."""
        return self._name if self._folder is None else os.path.join(self._folder, self._name)

    @property
    def image(self) -> Path:
        return Path(self.path)

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError(f"Sample is read-only (cannot set {key!r})")

    def __delattr__(self, key: str) -> None:
        raise AttributeError(f"Sample is read-only (cannot delete {key!r})")

    def __reduce__(self):
        return (_sample, (self.id, self._folder, self._name, self.caption, self.labels))

    def _key(self) -> tuple:
        return (self.id, self.path, self.caption)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sample):
            return NotImplemented
        return self._key() == other._key() and dict(self.labels) == dict(other.labels)

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Sample(id={self.id!r}, image={self.image!r}, caption={self.caption!r}, labels={dict(self.labels)!r})"


def _sample(id: str, folder: str | None, name: str, caption: str | None, labels: Mapping[str, str]) -> Sample:
    return Sample(id, name, caption, labels, folder=folder)


@dataclass
class Dataset:
    """One split of a data set."""

    format: str
    root: Path
    split: str
    samples: list[Sample]
    label_fields: dict[str, LabelField]
    problems: list[str] = field(default_factory=list)  # non-fatal issues found while reading
    # Multi-label findings fields (data/findings.py): name -> FindingsField; their raw values
    # are in each Sample.labels under the field's keys.
    multilabel_fields: dict = field(default_factory=dict)
    # (samples list, its length, fingerprint) of the last fingerprint() call
    _fingerprint: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.samples)

    def label_field(self, name: str) -> LabelField:
        from medclip_cli.errors import UsageError

        if name not in self.label_fields:
            known = ", ".join(self.label_fields) or "none"
            raise UsageError(f"unknown label field {name!r} for this data set (known: {known})")
        return self.label_fields[name]

    def fingerprint(self) -> str:
        """Identifies this split's content: ids, captions, labels, and each file's :func:`file_identity`.

        Computed once per Dataset (every model and evaluation of a run asks for it): a Dataset is
        a snapshot of one read of the split, and the files are stat'ed when it is first asked
        for, before any of them is read for features. Assigning other samples computes it again;
        a changed file is seen by the next read of the data set (the next command).
        """
        memo = self._fingerprint
        if memo is not None and memo[0] is self.samples and memo[1] == len(self.samples):
            return memo[2]
        digest = hashlib.sha256(f"{self.format}|{self.split}".encode())
        for s in self.samples:
            try:
                file_key = file_identity(os.stat(s.path))
            except OSError:
                file_key = "missing"
            labels = "|".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            digest.update(f"{s.id}\0{os.path.basename(s.path)}\0{file_key}\0{s.caption}\0{labels}\n".encode())
        self._fingerprint = (self.samples, len(self.samples), digest.hexdigest()[:16])
        return self._fingerprint[2]


def file_identity(st) -> str:
    """What tells a file's content changed without reading it: size, mtime, and also the inode
    and ctime, which a rewrite changes even when it keeps the size and restores the mtime."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


@dataclass(frozen=True)
class DatasetFormat:
    """A data-set layout a plugin can read: ``detect`` a root, list ``splits``, ``load`` one."""

    name: str
    description: str
    detect: Callable[[Path], bool]
    splits: Callable[[Path], list[str]]
    load: Callable[..., Dataset]  # load(root, split, **options) -> Dataset
    plugin: str = ""
