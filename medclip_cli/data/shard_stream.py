"""Training straight from WebDataset tar shards (``finetune --stream``): nothing unpacked or cached.

A :class:`ShardSet` is one split's tars and the samples each holds (``sizes.json``, written by
``medclip data shard`` in open_clip_train's format, else counted once from the tar headers, or a
``--samples-per-epoch`` the user gives). Each epoch:

- the shard order is a permutation seeded by (seed, epoch) (:func:`epoch_shards`), the same in
  every process;
- :func:`split_shards` gives each of ``world`` ranks × ``workers`` loader workers every
  ``world × workers``-th shard of that order, so each shard is read by exactly one of them;
- a worker (:class:`WorkerStream`) reads its shards front to back, shuffles the samples within a
  buffer (a seeded ``random.Random``, webdataset's algorithm), decodes and resizes each image the
  way the decode cache does (:func:`~medclip_cli.data.preprocess.resize_to_uint8`), and cuts
  batches. It reports each of its shards as *done* with the batch that holds the shard's last
  sample (read to the tar's end), which is what a checkpoint records, once a completed step has
  applied that batch, to resume at shard granularity (``training/stream_batches.py``).

Both this path and the cached one take a shard's members from one reader with the same checks
(:func:`medclip_cli.data.tar_members.read_members`).

Every rank must take the same number of steps, so an epoch is a fixed number of batches per
worker. A worker whose shards run out first (shards of unequal size, skipped samples) reads its
share of the epoch's shards again (its *top-up*, in a fresh shuffled order) until its batches are
full; a worker with more samples than batches leaves the rest unread this epoch.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from medclip_cli.data import shards, tar_members
from medclip_cli.data.dataset import file_identity
from medclip_cli.errors import DataError, ImageError, UsageError

_STRICT_HINT = "fix or remove the shard, or run without --strict to skip such samples"


@dataclass(frozen=True)
class ShardSet:
    """The shards of one split and how many samples an epoch streams."""

    path: Path
    split: str
    tars: tuple[Path, ...]
    samples: int  # per epoch: the sum of the shards' sizes, or --samples-per-epoch

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tars]

    def tar(self, name: str) -> Path:
        return self.tars[0].parent / name

    def __len__(self) -> int:
        return self.samples

    def fingerprint(self) -> str:
        """Identifies the shards (names, sizes, mtimes, inodes) without reading them."""
        digest = hashlib.sha256(f"webdataset-stream|{self.split}".encode())
        for tar in self.tars:
            try:
                key = file_identity(tar.stat())
            except OSError:
                key = "missing"
            digest.update(f"{tar.name}\0{key}\n".encode())
        return digest.hexdigest()[:16]


def open_shard_set(path: Path, split: str, samples_per_epoch: int | None = None) -> ShardSet:
    """``split`` of the shard set at ``path``; its sample count as described in the module doc."""
    path = Path(path)
    if not shards.detect(path):
        raise UsageError(
            f"--stream: {path} is not a folder of WebDataset .tar shards",
            hint="write shards with `medclip data shard DATA --output SHARDS`, or drop --stream",
        )
    tars = tuple(shards.split_tars(path, split))
    if samples_per_epoch is None:
        sizes = shard_sizes(tars)
        samples_per_epoch = sum(sizes)
    return ShardSet(path, split, tars, samples_per_epoch)


def shard_sizes(tars: Sequence[Path]) -> list[int]:
    """Samples per shard: from ``sizes.json`` beside them when it names every one, else counted."""
    listed: dict = {}
    sizes_file = tars[0].parent / shards.SIZES_FILE if tars else None
    if sizes_file is not None and sizes_file.is_file():
        try:
            listed = json.loads(sizes_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            listed = {}
    if isinstance(listed, dict) and all(isinstance(listed.get(t.name), int) for t in tars):
        return [int(listed[t.name]) for t in tars]
    return [count_samples(t) for t in tars]


def count_samples(tar: Path) -> int:
    """Samples with a readable image member in ``tar`` (the image bytes are skipped); a broken tar
    is a :class:`~medclip_cli.data.tar_members.BrokenShard` naming it."""
    keys = set()
    for member in tar_members.read_members(tar, read_images=False):
        if member.problem is None and tar_members.is_image(member.ext):
            keys.add(member.key)
    return len(keys)


def epoch_shards(names: Sequence[str], seed: int, epoch: int) -> list[str]:
    """The shard order of one epoch: the same in every process and after a resume."""
    order = sorted(names)
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def split_shards(order: Sequence[str], rank: int, world: int, worker: int, workers: int) -> list[str]:
    """The shards rank ``rank``'s loader worker ``worker`` reads: every ``world × workers``-th."""
    return list(order[rank * workers + worker :: world * workers])


def stream_workers(shard_count: int, world: int, requested: int) -> int:
    """Loader worker processes per rank: as asked, but no more than every worker has a shard for
    (0: the rank's one stream runs in the training process)."""
    if shard_count < world:
        raise DataError(
            f"--stream: {shard_count} shard(s) for {world} processes; each process needs at least one",
            hint="write more, smaller shards (medclip data shard --samples-per-shard N)",
        )
    return min(requested, shard_count // world)


@dataclass
class RawSample:
    """One sample as it comes out of a tar: its members' bytes by extension."""

    shard: str
    key: str
    members: dict[str, bytes]
    primary: bool = True  # False: read again to top a worker's epoch up (its shard is done already)
    problem: str | None = None  # why it cannot train, found before its bytes were read
    last: bool = False  # the shard's last sample, the shard read to its end


@dataclass(frozen=True)
class _Skip:
    reason: str


@dataclass(frozen=True)
class _Read:  # a shard was read to its end (or to where it broke)
    shard: str
    primary: bool


@dataclass(frozen=True)
class _Done:  # every sample of this shard is in a batch
    shard: str


def read_shard(tar: Path, primary: bool = True) -> Iterator[RawSample | _Skip | _Read]:
    """The samples of ``tar`` in order (consecutive members with one key), then a ``_Read``; the
    members come from :func:`~medclip_cli.data.tar_members.read_members`, with the cached path's
    checks. The last sample of a shard read to its end is marked ``last``. A shard that cannot be
    opened or breaks off (truncated) yields a ``_Skip`` saying so after the samples read before it;
    the sample it broke in is dropped."""
    current: RawSample | None = None
    read = 0
    broken: tar_members.BrokenShard | None = None
    try:
        for member in tar_members.read_members(tar):
            if current is not None and member.key != current.key:
                yield current
                read += 1
                current = None
            if current is None:
                current = RawSample(tar.name, member.key, {}, primary)
            if member.problem is not None:
                current.problem = current.problem or member.problem
            else:
                current.members[member.ext] = member.data
    except tar_members.BrokenShard as exc:
        broken = exc
    if current is not None and (broken is None or broken.key != current.key):  # complete before the break
        current.last = broken is None
        yield current
        read += 1
    if broken is not None:
        yield _Skip(f"{tar}: unreadable after {read} sample(s) ({broken.reason}); the rest of the shard is skipped")
    yield _Read(tar.name, primary)


def decode_sample(raw: RawSample, preprocess) -> tuple[np.ndarray, str, dict[str, str]]:
    """(uint8 pixels as the decode cache holds them, caption, labels) of ``raw``; ``ImageError``
    or ``DataError`` saying why it cannot train."""
    from medclip_cli.data.images import load_image_bytes
    from medclip_cli.data.preprocess import resize_to_uint8

    where = f"{raw.shard}/{raw.key}"
    if raw.problem is not None:
        raise DataError(raw.problem)
    image_ext = next((ext for ext in raw.members if tar_members.is_image(ext)), None)
    if image_ext is None:
        raise DataError(f"{where}: has no image member; skipped")
    txt = raw.members["txt"].decode("utf-8", errors="replace") if "txt" in raw.members else None
    try:  # a .json that is not UTF-8 is ignored, as one that is not JSON
        json_text = raw.members["json"].decode("utf-8") if "json" in raw.members else None
    except UnicodeDecodeError:
        json_text = None
    caption, labels, _, _ = shards.sample_text(txt, json_text)
    if not isinstance(caption, str) or not caption.strip():
        raise DataError(f"{where}: no caption (.txt, or \"caption\" in .json); skipped")
    refused = tar_members.caption_problem(f"{raw.shard}: sample {raw.key!r}", caption)
    if refused is not None:
        raise DataError(refused)
    pixels = resize_to_uint8(load_image_bytes(f"{where}.{image_ext}", raw.members[image_ext]), preprocess)
    return pixels, caption.strip(), labels


class WorkerStream:
    """One loader worker's samples of one epoch: its shards (``primary``), shuffled within a
    buffer of ``buffer`` samples by ``rng``, then its ``topup`` shards again as long as needed."""

    def __init__(self, set_: ShardSet, primary: list[str], topup: list[str], buffer: int, rng: random.Random, preprocess, strict: bool):
        self.set, self.primary, self.topup = set_, primary, topup
        self.buffer, self.rng, self.preprocess, self.strict = max(1, buffer), rng, preprocess, strict

    def _topup(self) -> Iterator[RawSample | _Skip | _Read]:
        while self.topup:
            order = list(self.topup)
            self.rng.shuffle(order)
            got = 0
            for name in order:
                for item in read_shard(self.set.tar(name), primary=False):
                    got += isinstance(item, RawSample) and item.problem is None  # a refused member never trains
                    yield item
            if not got:
                raise DataError(f"{self.set.path}: no readable sample in shards {', '.join(order)}", hint="check them with `medclip data check`")

    def _shuffled(self) -> Iterator[RawSample | _Skip | _Done]:
        primary = (item for name in self.primary for item in read_shard(self.set.tar(name)))
        yield from self._buffered(primary)  # drained before the top-up starts: it never delays a primary sample
        yield from self._buffered(self._topup())

    def _buffered(self, source: Iterable[RawSample | _Skip | _Read]) -> Iterator[RawSample | _Skip | _Done]:
        buf: list[RawSample] = []
        held: dict[str, int] = {}  # samples of each primary shard in the buffer
        read: set[str] = set()

        def pop() -> Iterator[RawSample | _Done]:
            k = self.rng.randrange(len(buf))
            buf[k], buf[-1] = buf[-1], buf[k]
            sample = buf.pop()
            if sample.primary:
                held[sample.shard] -= 1
                if not held[sample.shard] and sample.shard in read:
                    yield _Done(sample.shard)  # before the sample: both belong to the batch being cut
            yield sample

        for item in source:
            if isinstance(item, _Read):
                if item.primary and item.shard not in read:
                    read.add(item.shard)
                    if not held.get(item.shard):
                        yield _Done(item.shard)
                continue
            if isinstance(item, _Skip):
                yield item
                continue
            buf.append(item)
            if item.primary:
                held[item.shard] = held.get(item.shard, 0) + 1
                if item.last:  # known read to its end now: done with the batch that takes its last sample
                    read.add(item.shard)
            if len(buf) >= self.buffer:
                yield from pop()
        while buf:
            yield from pop()

    def batches(self, jobs: Iterable[int], batch_size: int) -> Iterator[dict]:
        """A batch for each micro-batch index of ``jobs``: ``images`` [B, H, W, 3] uint8,
        ``captions``, ``labels``, ``keys`` (shard/key), ``done`` (shards finished with this
        batch) and ``skipped`` (why samples read for it could not train)."""
        items = self._shuffled()
        done: list[str] = []
        skipped: list[str] = []
        for micro in jobs:
            images, captions, labels, keys = [], [], [], []
            while len(images) < batch_size:
                item = next(items, None)
                if item is None:
                    raise DataError(f"{self.set.path}: the shards ran out of samples mid-epoch", hint="check them with `medclip data check`")
                if isinstance(item, _Done):
                    done.append(item.shard)
                    continue
                if isinstance(item, _Skip):
                    if self.strict:
                        raise DataError(item.reason, hint=_STRICT_HINT)
                    skipped.append(item.reason)
                    continue
                try:
                    pixels, caption, labels_ = decode_sample(item, self.preprocess)
                except (ImageError, DataError) as exc:
                    if self.strict:
                        raise DataError(str(exc), hint=_STRICT_HINT) from exc
                    skipped.append(str(exc))
                    continue
                images.append(pixels)
                captions.append(caption)
                labels.append(labels_)
                keys.append(f"{item.shard}/{item.key}")
            yield {"micro": micro, "images": np.stack(images), "captions": captions, "labels": labels, "keys": keys, "done": done, "skipped": skipped}
            done, skipped = [], []
