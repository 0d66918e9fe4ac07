"""The training data of a run: decoded pairs (:class:`PairSet`) and the batches of each step.

The split is decoded once into a uint8 array; each step slices a batch out of it, normalised on
the device, with pre-tokenised captions (int32, from the token cache ``models/token_cache.py``;
int64 per batch). The data order of epoch e is a permutation seeded by (seed, e), and every
random choice of a batch (crop, label text) is seeded by its place in the run, so a checkpoint
needs only (epoch, position) to continue exactly where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from medclip_cli.data.row_file import RowFile
from medclip_cli.runtime.forward import frozen_text_pooled
from medclip_cli.training.config import TrainConfig


@dataclass
class PairSet:
    """Decoded images with their pre-tokenised captions (and labels) in the same order."""

    pixels: np.ndarray  # [N, H, W, 3] uint8
    tokens: torch.Tensor  # [N, context] int32 (a memory map of the token cache file); int64 per batch
    captions: list[str]
    labels: list[dict]
    groups: torch.Tensor | None  # [N] soft-target group ids, or [N, 2 + fields] keys with label prompts
    skipped: int
    # Label text: tokenised label prompts, and for each pair the rows of them that describe it.
    label_tokens: torch.Tensor | None = None  # [M, context] int64
    label_choices: list[list[int]] | None = None
    label_groups: torch.Tensor | None = None  # [M] label key of each prompt (after the caption groups)
    # With the text-feature cache: the locked text tower's pooled output of each caption / prompt.
    text_pooled: torch.Tensor | None = None  # [N, width] float32
    label_pooled: torch.Tensor | None = None  # [M, width] float32
    # Pair k's image is ``pixels[rows[k]]`` (None: row k). A split with images that have no caption
    # indexes the decode cache's memory map instead of copying the kept rows into memory.
    rows: np.ndarray | None = None  # [N] int64
    ids: list[str] | None = None  # each pair's Sample.id (names an image in a bad-label message)
    # The cache files behind ``pixels`` and ``tokens``: batches read their rows with pread, so
    # the rows an epoch touches are not mapped into the process (data/row_file.py).
    pixel_file: "RowFile | None" = None
    token_file: "RowFile | None" = None

    def pixel_rows(self, idx: np.ndarray) -> np.ndarray:
        """The rows of ``pixels`` that hold the images of pairs ``idx``."""
        return idx if self.rows is None else self.rows[idx]

    def pixel_batch(self, start: int, stop: int) -> np.ndarray:
        """The images of pairs ``start:stop`` (a view when no rows are left out, else gathered)."""
        if self.rows is None:
            return self.pixels[start:stop]
        return self.pixels[self.rows[start:stop]]

    def add_text_cache(self, module: nn.Module, batch: int) -> None:
        self.text_pooled = frozen_text_pooled(module, self.tokens, batch)
        if self.label_tokens is not None:
            self.label_pooled = frozen_text_pooled(module, self.label_tokens, batch)

    @property
    def texts(self) -> torch.Tensor:
        """What a step feeds the text side: token ids, or cached pooled features."""
        return self.text_pooled if self.text_pooled is not None else self.tokens

    @property
    def label_texts(self) -> torch.Tensor | None:
        return self.label_pooled if self.text_pooled is not None else self.label_tokens

    def __len__(self) -> int:
        return len(self.captions)


def load_pairs(
    dataset,
    model,
    *,
    strict: bool,
    progress,
    soft_label: str | None,
    soft: bool,
    label_text: tuple[list[str], str | None] | None = None,
    cache: bool = True,
) -> PairSet:
    """The pairs of ``dataset``: pixels from the decode cache and caption tokens from the token
    cache (``cache=False``, ``--no-cache``: neither read nor written)."""
    from medclip_cli.data.pixels import load_pixels
    from medclip_cli.evaluation.retrieval import caption_groups
    from medclip_cli.models.token_cache import caption_tokens

    pixel_set = load_pixels(dataset, model.preprocess, strict=strict, progress=progress, cache=cache)
    every, indices = dataset.samples, pixel_set.indices
    keep = np.fromiter((pos for pos, i in enumerate(indices) if every[i].caption), dtype=np.int64)
    samples = [every[indices[pos]] for pos in keep.tolist()]
    rows = None if len(keep) == len(pixel_set) else keep
    captions = [s.caption for s in samples]
    token_array = caption_tokens(
        model.tokenizer, model.tokenize, captions, model.context_length, cache=cache, progress=progress,
        label=f"tokenising {dataset.split} captions",
    )  # fmt: skip
    tokens = torch.from_numpy(token_array)
    groups = None
    if soft:
        if soft_label:
            dataset.label_field(soft_label)  # unknown field: usage error naming the known ones
            # Pairs without the label get their own group (no extra positives).
            values = [s.labels.get(soft_label) or f"\0{k}" for k, s in enumerate(samples)]
            _, ids = caption_groups(values)
        else:
            _, ids = caption_groups(captions)
        groups = torch.tensor(ids, dtype=torch.long)
    if pixel_set.skipped:
        progress.log(
            f"{dataset.split}: skipped {len(pixel_set.skipped)} unreadable image(s), e.g. {pixel_set.skipped[0][1]}"
        )
    if len(keep) < len(pixel_set):
        progress.log(f"{dataset.split}: left out {len(pixel_set) - len(keep)} image(s) without a caption")
    skipped = len(dataset) - len(samples)
    # The samples' own label dicts (read, never written): no copy per pair of a large split.
    pairs = PairSet(
        pixel_set.array, tokens, captions, [s.labels for s in samples], groups, skipped, rows=rows, ids=[s.id for s in samples],
        pixel_file=RowFile.of(pixel_set.array), token_file=RowFile.of(token_array),
    )  # fmt: skip
    if label_text is not None:
        add_label_text(pairs, dataset, model, *label_text, label_targets=soft and not soft_label)
    return pairs


def label_prompts_by_field(dataset, labels: dict, fields_: Sequence[str], prompt_set) -> list[tuple[tuple[str, str], list[str]]]:
    """``((field, value), prompts)`` for each field of ``fields_`` whose value is a listed class."""
    from medclip_cli.evaluation.zeroshot import fill_template

    out = []
    for name in fields_:
        label_field = dataset.label_field(name)
        value = labels.get(name)
        if value not in label_field.classes:
            continue
        readable = label_field.readable_name(value)
        out.append(((name, value), [fill_template(t, readable) for t in prompt_set.for_task(name, label_field)[readable]]))
    return out


def add_label_text(pairs: PairSet, dataset, model, fields_: list[str], prompts_name: str | None, *, label_targets: bool = False) -> None:
    """Tokenise the label prompts of every pair. Each prompt's group is its label key (field and
    class); with ``label_targets`` the caption groups become ``[N, 2 + fields]`` keys (column 0:
    the text's, initially the caption group; 1: the caption group; then one label key per field,
    −1 where the pair has none) so that a prompt is a positive of every image with its class
    (see ``training/loss.py``)."""
    from medclip_cli.evaluation.prompts import load_prompt_set

    prompt_set = load_prompt_set(prompts_name)
    rows: dict[str, int] = {}
    row_keys: list[int] = []
    keys: dict[tuple[str, str], int] = {}
    choices = []
    pair_keys = []
    for labels in pairs.labels:
        mine, own = [], [-1] * len(fields_)
        for (name, value), prompts in label_prompts_by_field(dataset, labels, fields_, prompt_set):
            key = keys.setdefault((name, value), len(keys))
            own[fields_.index(name)] = key
            for prompt in prompts:
                if prompt not in rows:  # a prompt two classes share keeps the first one's key
                    rows[prompt] = len(rows)
                    row_keys.append(key)
                mine.append(rows[prompt])
        choices.append(list(dict.fromkeys(mine)))
        pair_keys.append(own)
    texts = list(rows)
    pairs.label_tokens = model.tokenize(texts).long() if texts else torch.zeros(0, model.context_length, dtype=torch.long)
    pairs.label_choices = choices
    offset = int(pairs.groups.max()) + 1 if pairs.groups is not None and len(pairs.groups) else 0
    pairs.label_groups = torch.tensor(row_keys, dtype=torch.long) + offset
    if label_targets and pairs.groups is not None:
        own = torch.tensor(pair_keys, dtype=torch.long).reshape(len(pair_keys), len(fields_))
        own = torch.where(own >= 0, own + offset, own)
        pairs.groups = torch.cat([pairs.groups[:, None], pairs.groups[:, None], own], dim=1)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The data order of one epoch: the same on every rank and after a resume."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def random_resized_crop(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per image, a random square crop of 80–100 % of the side, resized back (NCHW float)."""
    import torch.nn.functional as F

    n, _, h, w = images.shape
    out = torch.empty_like(images)
    scales = (0.8 + 0.2 * torch.rand(n, generator=generator)).tolist()
    offsets = torch.rand(n, 2, generator=generator).tolist()
    for k in range(n):
        ch, cw = max(1, int(h * scales[k])), max(1, int(w * scales[k]))
        top, left = int(offsets[k][0] * (h - ch)), int(offsets[k][1] * (w - cw))
        crop = images[k : k + 1, :, top : top + ch, left : left + cw]
        out[k] = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
    return out


def _tensor(array: np.ndarray, pin: bool) -> torch.Tensor:
    """``array`` as a tensor (sharing its memory), or copied into pinned memory by NumPy."""
    if not pin:
        return torch.from_numpy(array)
    out = torch.empty(array.shape, dtype=torch.from_numpy(array[:0]).dtype, pin_memory=True)
    np.copyto(out.numpy(), array)
    return out


def _gather(source: np.ndarray, idx: np.ndarray, pin: bool, file: RowFile | None = None) -> torch.Tensor:
    """``source[idx]`` as a tensor, gathered by NumPy (read from ``file``, the cache file behind
    ``source``, when given); with ``pin`` straight into pinned memory (one copy instead of a
    gather and then a copy into pinned memory)."""
    if not pin:
        return torch.from_numpy(file.take(idx) if file is not None else source[idx])
    out = torch.empty((len(idx), *source.shape[1:]), dtype=torch.from_numpy(source[:0]).dtype, pin_memory=True)
    if file is not None:
        file.take(idx, out.numpy())
    else:
        np.take(source, idx, axis=0, out=out.numpy(), mode="clip")  # "clip": no bounds pass, no buffering
    return out


class Batches:
    """The micro-batches of the rest of the run, gathered ahead in threads when ``workers`` > 0.

    ``segments`` holds (epoch, first micro-batch, count) for every epoch still to run. One stream
    spans the epochs, so the threads gather the next epoch's first batches while this one ends
    (validation, bundles, checkpoint) instead of the next step waiting for them.
    """

    def __init__(self, data: PairSet, cfg: TrainConfig, device, info, segments: list[tuple[int, int, int]]):
        self.data, self.cfg, self.device, self.info = data, cfg, device, info
        self.segments = list(segments)

    def order_of(self, epoch: int) -> torch.Tensor:
        return epoch_order(len(self.data), self.cfg.seed, epoch)

    def _jobs(self):
        order, order_epoch = None, None
        for epoch, start, count in self.segments:
            if epoch != order_epoch:  # one permutation per epoch, however many segments it has
                order, order_epoch = self.order_of(epoch), epoch
            for micro in range(start, start + count):
                yield epoch, order, micro

    def _make(self, epoch: int, order: torch.Tensor, micro: int):
        # NumPy only: a torch kernel run in one of these threads slows the training step in the
        # main thread by a third or more (measured on the CPU, ``tests/training/test_batches.py``
        # keeps it out), so the batch is gathered with NumPy, on a GPU straight into pinned memory.
        b, rank = self.cfg.batch_size, self.info.rank
        global_batch = order[micro * b * self.info.world_size : (micro + 1) * b * self.info.world_size]
        idx = global_batch[rank * b : (rank + 1) * b].numpy()
        pin = self.device.type == "cuda"  # pinned, so the copies to the device never wait on the step
        # uint8 until it reaches the device: a quarter of the bytes to move; normalised there.
        pixels = _gather(self.data.pixels, self.data.pixel_rows(idx), pin, self.data.pixel_file)
        augment = None
        if self.cfg.augment:  # stateless: the crop of a batch depends only on where it sits in the run
            augment = torch.Generator().manual_seed(
                (((self.cfg.seed * 1_000_003 + epoch) * 1_000_003 + micro) * 4096 + rank) % 2**63
            )
        groups = self.data.groups.numpy()[idx] if self.data.groups is not None else None
        token_file = self.data.token_file if self.data.text_pooled is None else None
        tokens = token_file.take(idx) if token_file is not None else self.data.texts.numpy()[idx]
        if tokens.dtype.kind in "iu":  # token ids: int32 in the pair set, int64 (what the embedding takes) per batch
            tokens = tokens.astype(np.int64, copy=False)
        if self.cfg.label_text_prob > 0 and self.data.label_choices is not None:
            self._label_text(idx, tokens, groups, epoch, micro, rank)
        return pixels, _tensor(tokens, pin), _tensor(groups, pin) if groups is not None else None, augment

    def _label_text(self, idx: np.ndarray, tokens: np.ndarray, groups: np.ndarray | None, epoch: int, micro: int, rank: int) -> None:
        """Replace some captions by label prompts, in place; seeded by the batch's place in the
        run, like the crop."""
        data = self.data
        g = torch.Generator().manual_seed((((self.cfg.seed * 1_000_003 + epoch) * 1_000_003 + micro) * 4096 + rank + 2048) % 2**63)
        draws = torch.rand(len(idx), generator=g).tolist()
        picks = torch.rand(len(idx), generator=g).tolist()
        label_texts = data.label_texts.numpy()
        # A label prompt's group is its label key: the text side of the [N, 2 + fields] keys (a
        # positive of every image with that class), or, 1-D, the group of every pair it replaces.
        label_groups = data.label_groups.numpy() if groups is not None and not self.cfg.soft_label else None
        text_keys = groups[:, 0] if groups is not None and groups.ndim == 2 else groups  # a view: written through
        for k, i in enumerate(idx.tolist()):
            options = data.label_choices[i]
            if options and draws[k] < self.cfg.label_text_prob:
                row = options[min(int(picks[k] * len(options)), len(options) - 1)]
                tokens[k] = label_texts[row]
                if label_groups is not None:
                    text_keys[k] = label_groups[row]

    def __iter__(self):
        jobs = self._jobs()
        if self.cfg.workers <= 0:
            for job in jobs:
                yield self._make(*job)
            return
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor
        from itertools import islice

        pool = ThreadPoolExecutor(self.cfg.workers, thread_name_prefix="medclip-batches")
        try:
            pending = deque(pool.submit(self._make, *job) for job in islice(jobs, max(2, 2 * self.cfg.workers)))
            while pending:
                batch = pending.popleft().result()
                job = next(jobs, None)
                if job is not None:
                    pending.append(pool.submit(self._make, *job))
                yield batch
        finally:  # an interrupted run does not wait for batches it will never use
            pool.shutdown(wait=True, cancel_futures=True)
