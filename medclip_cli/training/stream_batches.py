"""The batches of a streamed run (``finetune --stream``): shards read by DataLoader workers.

:class:`StreamBatches` is the streaming counterpart of :class:`~medclip_cli.training.batches.Batches`
and yields the same ``(pixels, tokens, groups, augment)`` micro-batches to the same trainer. For
each epoch still to run it starts a ``torch.utils.data.DataLoader`` over :class:`_EpochShards`:
``--workers`` processes (0: in the training process), each reading its share of the epoch's shards
(:mod:`medclip_cli.data.shard_stream`). Micro-batch ``m`` of the epoch comes from worker
``(m − first) mod workers``; the DataLoader returns them in that order, checked here.

Resume, at shard granularity: :meth:`StreamBatches.progress` is the epoch and the shards done in
it: those every sample of which was in a micro-batch that a *completed* optimizer step applied.
Each micro-batch notes the shards it finishes; the checkpoint counts only those of the first
``applied`` micro-batches of the epoch (the trainer's position × ``grad_accum``), so a batch handed
out to a step that a stop request then abandons counts for nothing. A resumed run reads the epoch's
other shards (split again over ranks × workers) for the rest of the epoch. An epoch boundary
resumes bit for bit; inside an epoch the rest of the epoch reads those shards, not the same batches
(see the README, "Streaming from shards").
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from medclip_cli.data.shard_stream import ShardSet, WorkerStream, epoch_shards, open_shard_set, split_shards, stream_workers
from medclip_cli.errors import DataError, MedclipError
from medclip_cli.training.config import TrainConfig


class StreamSource:
    """What a streamed run knows of its training split before the first step: the shards."""

    skipped = 0

    def __init__(self, shard_set: ShardSet, model) -> None:
        self.shards, self.preprocess, self.tokenize = shard_set, model.preprocess, model.tokenize

    def __len__(self) -> int:
        return len(self.shards)

    def fingerprint(self) -> str:
        return self.shards.fingerprint()


def open_stream(cfg: TrainConfig, model) -> StreamSource:
    return StreamSource(open_shard_set(cfg.data, cfg.split, cfg.samples_per_epoch), model)


def group_ids(keys: list[str]) -> np.ndarray:
    """Soft-target group ids that every rank computes alike without the whole split: a 62-bit
    hash of the caption (or label value), so equal texts share a group across the global batch."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "little") >> 2 for k in keys], dtype=np.int64
    )


class _EpochShards(IterableDataset):
    """Micro-batches ``first .. first + count − 1`` of one epoch for one rank, cut by each
    DataLoader worker from its shards."""

    def __init__(self, source: StreamSource, cfg: TrainConfig, rank: int, world: int, epoch: int, first: int, count: int, remaining: list[str], order: list[str]):
        self.source, self.cfg, self.rank, self.world = source, cfg, rank, world
        self.epoch, self.first, self.count, self.remaining, self.order = epoch, first, count, remaining, order

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        cfg = self.cfg
        rng = random.Random(f"{cfg.seed}/{self.epoch}/{self.rank}/{worker}/{workers}/{self.first}")
        stream = WorkerStream(
            self.source.shards,
            split_shards(self.remaining, self.rank, self.world, worker, workers),
            split_shards(self.order, self.rank, self.world, worker, workers),
            cfg.shuffle_buffer,
            rng,
            self.source.preprocess,
            cfg.strict,
        )
        jobs = range(self.first + worker, self.first + self.count, workers)
        try:
            for batch in stream.batches(jobs, cfg.batch_size):
                batch["tokens"] = self.source.tokenize(batch["captions"]).long()
                if cfg.soft_targets:
                    if cfg.soft_label:  # pairs without the label get their own group
                        keys = [f"L{lab[cfg.soft_label]}" if cfg.soft_label in lab else f"K{k}" for lab, k in zip(batch["labels"], batch["keys"])]
                    else:
                        keys = [f"C{c}" for c in batch["captions"]]
                    batch["groups"] = group_ids(keys)
                yield batch
        except MedclipError as exc:  # one clear line in the training process, not a worker traceback
            yield {"error": exc.message, "hint": exc.hint}


class StreamBatches:
    """The micro-batches of the rest of a streamed run (``segments`` as for ``Batches``)."""

    def __init__(self, source: StreamSource, cfg: TrainConfig, device, info, segments, resumed: dict | None = None, progress=None):
        self.source, self.cfg, self.device, self.info = source, cfg, device, info
        self.segments = list(segments)
        self.resumed = resumed if isinstance(resumed, dict) else None
        self.report = progress
        self.epoch = self.segments[0][0] if self.segments else 0
        # Shards done before this run resumed inside the epoch, then (micro-batch, shards it finished).
        self.resumed_done: set[str] = self._resumed_done(*self.segments[0][:2]) if self.segments else set()
        self.finished: list[tuple[int, list[str]]] = []
        self.keys: list[str] = []  # shard/key of each pair of the last batch handed out

    def progress(self, epoch: int, applied: int) -> dict:
        """What a checkpoint records when the trainer is in ``epoch`` with its first ``applied``
        micro-batches applied by completed steps: the stream's epoch and the shards of it whose
        samples have all been trained on, by any rank (every rank calls this: it gathers their sets).
        Batches handed out beyond ``applied`` (a step abandoned half-way) count for nothing."""
        if epoch != self.epoch:  # the stream's epoch ended (every batch of it applied), the next not begun
            applied = None
        done = self.resumed_done | {s for micro, names in self.finished if applied is None or micro < applied for s in names}
        if self.info.enabled:
            import torch.distributed as dist

            parts: list = [None] * self.info.world_size
            dist.all_gather_object(parts, sorted(done))
            done = done.union(*parts)
        return {"epoch": self.epoch, "done": sorted(done)}

    def _resumed_done(self, epoch: int, first: int) -> set[str]:
        if first > 0 and self.resumed is not None and self.resumed.get("epoch") == epoch:
            return {str(name) for name in self.resumed.get("done", [])}
        return set()

    def _remaining(self, epoch: int, first: int, order: list[str]) -> list[str]:
        self.epoch, self.resumed_done, self.finished = epoch, self._resumed_done(epoch, first), []
        return [name for name in order if name not in self.resumed_done]

    def _loader(self, epoch: int, first: int, count: int) -> DataLoader:
        cfg, info = self.cfg, self.info
        order = epoch_shards(self.source.shards.names, cfg.seed, epoch)
        remaining = self._remaining(epoch, first, order)
        workers = stream_workers(len(order), info.world_size, cfg.workers)
        data = _EpochShards(self.source, cfg, info.rank, info.world_size, epoch, first, count, remaining, order)
        pin = self.device.type == "cuda"
        return DataLoader(data, batch_size=None, num_workers=workers, pin_memory=pin, prefetch_factor=2 if workers else None)

    def _batch(self, item: dict, epoch: int, micro: int):
        augment = None
        if self.cfg.augment:  # seeded by the batch's place in the run, as in Batches
            rank = self.info.rank
            augment = torch.Generator().manual_seed((((self.cfg.seed * 1_000_003 + epoch) * 1_000_003 + micro) * 4096 + rank) % 2**63)
        groups = item.get("groups")
        return item["images"], item["tokens"], groups, augment

    def __iter__(self):
        for epoch, first, count in self.segments:
            expected, waiting, skipped = first, {}, []
            loader_iter = iter(self._loader(epoch, first, count))
            try:
                for item in loader_iter:
                    if "error" in item:
                        raise DataError(item["error"], hint=item["hint"])
                    waiting[int(item["micro"])] = item
                    while expected in waiting:
                        item = waiting.pop(expected)
                        if item["done"]:  # counted by a checkpoint once a completed step has applied this batch
                            self.finished.append((expected, list(item["done"])))
                        skipped += item["skipped"]
                        self.keys = list(item["keys"])
                        if expected == first + count - 1 and skipped:
                            self._log_skips(epoch, skipped)
                        yield self._batch(item, epoch, expected)
                        expected += 1
            finally:
                del loader_iter  # stops its worker processes
            if expected != first + count:
                raise DataError(f"{self.source.shards.path}: epoch {epoch + 1} streamed {expected - first} of {count} batches")

    def _log_skips(self, epoch: int, skipped: list[str]) -> None:
        if self.report is not None:
            self.report.log(f"epoch {epoch + 1}: skipped {len(skipped)} streamed sample(s) or shard(s), e.g. {skipped[0]}")
