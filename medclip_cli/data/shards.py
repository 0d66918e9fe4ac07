"""WebDataset tar shards: reading them as a data set, and writing them from any data set.

A shard set is a folder of ``NNNNN.tar`` files (or one such folder per split: ``root/<split>/``).
Each sample is the members sharing one key (the name up to its first dot): an image
(``.png``/``.jpg``/``.jpeg``/``.tif``/``.dcm``...), and ``.txt`` (the caption) and/or ``.json``
(``{"caption": ..., "labels": {field: value}, "id": ...}``), the layout open_clip_train and
``img2dataset`` use.

Reading: each shard is read once, front to back (``tarfile`` streaming mode), and its images are
unpacked under ``MEDCLIP_HOME/cache/shards/<shard identity>/`` so that every command (and the
decode cache) sees ordinary files; a shard that has not changed (same path, size, mtime) is not
unpacked again. This needs the shards' size again on disk; ``finetune --stream`` instead trains
straight from the tars (:mod:`medclip_cli.data.shard_stream`, nothing unpacked or cached).

Writing also leaves ``sizes.json`` (``{"00000.tar": samples, ...}``, open_clip_train's file) next
to the shards, so a streamed run knows its epoch's length without reading them first.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import re

from medclip_cli.atomic import atomic_dir, atomic_open
from medclip_cli.data import tar_members
from medclip_cli.data.dataset import Dataset, Sample
from medclip_cli.data.home import cache_dir
from medclip_cli.data.labels import LabelField
from medclip_cli.errors import DataError, OutputError, UsageError
from medclip_cli.progress import NullProgress, ProgressReporter

ALL_SPLIT = "all"
SIZES_FILE = "sizes.json"
_DONE = ".complete"


def _tars(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.tar") if p.is_file() and not p.name.startswith("."))


def _split_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and _tars(d))


def detect(path: Path) -> bool:
    return path.is_dir() and bool(_tars(path) or _split_dirs(path))


def splits(path: Path, **options: object) -> list[str]:
    if not path.is_dir():
        raise DataError(f"{path}: not a folder", hint="a shard set is a folder of NNNNN.tar files")
    if _tars(path):
        return [ALL_SPLIT]
    return [d.name for d in _split_dirs(path)]


def split_tars(path: Path, split: str) -> list[Path]:
    """The shards of ``split`` in the shard set at ``path``, in name order."""
    available = splits(path)
    if split not in available:
        raise DataError(f"{path}: has no split {split!r} (available: {', '.join(available)})", hint="choose another --split")
    return _tars(path if split == ALL_SPLIT else path / split)


def sample_key(name: str) -> tuple[str, str]:
    """A member's (sample key, lower-case extension): ``a/b/0001.seg.png`` -> (``a/b/0001``, ``seg.png``)."""
    return tar_members.sample_key(name)


def sample_text(txt: str | None, json_text: str | None) -> tuple[str | None, dict[str, str], dict, bool]:
    """(caption, labels, metadata, whether the .json parsed) of a sample's ``.txt`` and ``.json``
    members: the caption is the ``.txt``, else the JSON's ``caption``; labels are its ``labels``."""
    meta, json_ok = {}, True
    if json_text is not None:
        try:
            meta = json.loads(json_text)
        except ValueError:
            json_ok = False
        meta = meta if isinstance(meta, dict) else {}
    caption = txt.strip() if txt is not None else meta.get("caption")
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items() if v is not None}
    return caption, labels, meta, json_ok


def _unpack_dir(tar: Path) -> Path:
    st = tar.stat()
    ident = hashlib.sha256(f"{tar.absolute()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:24]
    return cache_dir() / "shards" / ident


def _read_shard(tar: Path) -> tuple[list[Sample], list[str]]:
    """The samples of one shard, its images unpacked (once) into the shard cache. Its members come
    from :func:`~medclip_cli.data.tar_members.read_members`, with the streamed path's checks: a
    sample with a refused member is skipped, listed among the problems; a broken tar stops here."""
    folder = _unpack_dir(tar)
    unpacked = (folder / _DONE).is_file()
    found: dict[str, dict] = {}
    for member in tar_members.read_members(tar, read_images=not unpacked):  # BrokenShard: one line
        entry = found.setdefault(member.key, {})
        if member.problem is not None:
            entry.setdefault("problem", member.problem)
        elif tar_members.is_image(member.ext):
            safe = hashlib.sha256(member.key.encode()).hexdigest()[:16]
            target = folder / f"{safe}.{member.ext}"  # never the member's own name
            entry["image"] = target
            if member.data is not None:
                _unpack(target, member.data)
        else:
            entry[member.ext] = member.data.decode("utf-8", errors="replace")
    if not unpacked:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / _DONE).write_text(str(tar.absolute()))
    samples, problems = [], []
    for key, entry in found.items():
        if "problem" in entry:
            problems.append(entry["problem"])
            continue
        if "image" not in entry:
            problems.append(f"{tar}: sample {key!r} has no image; skipped")
            continue
        caption, labels, meta, json_ok = sample_text(entry.get("txt"), entry.get("json"))
        refused = tar_members.caption_problem(f"{tar}: sample {key!r}", caption)
        if refused is not None:
            problems.append(refused)
            continue
        if not json_ok:
            problems.append(f"{tar}: {key}.json is not JSON; its labels are ignored")
        samples.append(Sample(str(meta.get("id") or f"{tar.stem}/{key}"), entry["image"], caption, labels))
    return samples, problems


def _unpack(target: Path, data: bytes) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(target) as fh:
            fh.write(data)
    except OSError as exc:  # the shard is fine: the cache folder is not writable or full
        raise OutputError(
            f"{target.parent}: cannot unpack a shard's images into the cache ({exc.strerror or exc})",
            hint="free space there, point MEDCLIP_HOME at another disk, or train with --stream",
        ) from None


def load(path: Path, split: str = ALL_SPLIT) -> Dataset:
    tars = split_tars(path, split)
    samples: list[Sample] = []
    problems: list[str] = []
    for tar in tars:
        got, issues = _read_shard(tar)
        samples += got
        problems += issues
    if not samples:
        raise DataError(f"{path}: no samples in its shards", hint="each sample needs an image member (e.g. 000001.png)")
    values: dict[str, set[str]] = {}
    for s in samples:
        for name, value in s.labels.items():
            values.setdefault(name, set()).add(value)
    fields = {
        name: LabelField(name, tuple(sorted(vals)), {v: v for v in vals}, include_unlisted=True, description="shard .json labels")
        for name, vals in sorted(values.items())
    }
    return Dataset("webdataset", path, split, samples, fields, problems)


def write_shards(dataset: Dataset, out: Path, per_shard: int = 1000, progress: ProgressReporter | None = None) -> list[Path]:
    """Write ``dataset`` as ``out/00000.tar``...: per sample its image file's bytes as they are,
    ``.txt`` (caption, when it has one) and ``.json`` (id, caption, labels). Each shard is written
    under a temporary name and renamed, then ``sizes.json`` (samples per shard). Unreadable images
    are skipped; returns the shards."""
    if per_shard < 1:
        raise UsageError(f"--samples-per-shard {per_shard}: must be 1 or more")
    check_shard_output(dataset.root, out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"--output {out.parent}: cannot create the folder ({exc.strerror or exc})") from None
    # The split's folder is replaced whole: no shard of an earlier, larger run is left beside these.
    with atomic_dir(out) as tmp:
        names = _write_tars(dataset, tmp, per_shard, progress or NullProgress())
    return [out / name for name in names]


def check_shard_output(data: Path, out: Path) -> None:
    """Refuse a split folder ``out`` that would mix shards into the data set being read, or
    replace files ``data shard`` did not write."""
    data, target = Path(data).resolve(), Path(out).resolve()
    # A folder data set would find the shards among its own files next time; a manifest lists its images.
    inside = data.is_dir() and (target == data or data in target.parents)
    if inside or target in data.parents:
        raise UsageError(
            f"--output {out.parent}: is inside the data set being sharded ({data}), or holds it",
            hint="write the shards to a folder outside the data set",
        )
    if out.exists() or out.is_symlink():
        foreign = [p.name for p in out.iterdir() if not (_SHARD_NAME.fullmatch(p.name) or p.name == SIZES_FILE)] if out.is_dir() and not out.is_symlink() else [out.name]
        if foreign:
            raise OutputError(
                f"--output {out.parent}: {out.name}/ holds {foreign[0]!r}, which `medclip data shard` did not write; left as it is",
                hint="choose another --output",
            )


_SHARD_NAME = re.compile(r"\d{5}\.tar")


def _write_tars(dataset: Dataset, out: Path, per_shard: int, progress: ProgressReporter) -> list[str]:
    import io

    task = progress.task(f"sharding {dataset.split}", total=len(dataset))
    written, sizes = [], {}
    for first in range(0, len(dataset), per_shard):
        path = out / f"{first // per_shard:05d}.tar"
        with atomic_open(path) as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for k, sample in enumerate(dataset.samples[first : first + per_shard], start=first):
                try:
                    data = sample.image.read_bytes()
                except OSError:
                    progress.advance(task)
                    continue
                sizes[path.name] = sizes.get(path.name, 0) + 1
                key = f"{k:09d}"
                ext = sample.image.suffix.lower() or ".dcm"
                meta = {"id": sample.id, "caption": sample.caption, "labels": dict(sample.labels)}
                members = [(f"{key}{ext}", data), (f"{key}.json", json.dumps(meta).encode())]
                if sample.caption:
                    members.append((f"{key}.txt", sample.caption.encode()))
                for name, blob in members:
                    info = tarfile.TarInfo(name)
                    info.size = len(blob)
                    archive.addfile(info, io.BytesIO(blob))
                progress.advance(task)
        written.append(path.name)
        sizes.setdefault(path.name, 0)
    with atomic_open(out / SIZES_FILE) as fh:
        fh.write(json.dumps(sizes, indent=1).encode())
    progress.done(task)
    return written
