"""Decoded, resized pixels of a data set: what training and evaluation feed the model."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from medclip_cli.data.dataset import Dataset
from medclip_cli.data.images import load_image
from medclip_cli.data.preprocess import PreprocessConfig, resize_to_uint8
from medclip_cli.progress import NullProgress, ProgressReporter
from medclip_cli.errors import DataError, ImageError

_STRICT_HINT = "fix or remove the file, or run without --strict to skip it"


@dataclass
class PixelSet:
    """uint8 images ``array[N, H, W, 3]`` for the samples ``dataset.samples[indices[i]]``."""

    array: np.ndarray
    indices: "list[int] | range"  # range: every sample decoded (a cached set without skips)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (sample id, reason)

    def __len__(self) -> int:
        return len(self.indices)


def load_pixels(
    dataset: Dataset,
    preprocess: PreprocessConfig,
    *,
    strict: bool = False,
    progress: ProgressReporter | None = None,
    cache: bool = True,
) -> PixelSet:
    """Decode and resize every image of ``dataset`` once.

    A missing, empty or corrupt image is skipped and listed in ``skipped``; with ``strict`` it
    stops the run with a :class:`DataError` naming the file. With ``cache`` the pixels come from
    (or go to) the on-disk decode cache, so a second run decodes nothing; the values are the same.
    The cached array is a copy-on-write memory map: writing to it never changes the cache.
    """
    progress = progress or NullProgress()
    if cache and len(dataset):
        try:
            return _load_cached(dataset, preprocess, strict, progress)
        except OSError as exc:  # unwritable or full cache folder: still train, just slower
            warnings.warn(f"decode cache unavailable ({exc}); decoding images in memory", stacklevel=2)
    size = preprocess.image_size
    array = np.empty((len(dataset), size, size, 3), dtype=np.uint8)
    indices, skipped = _decode_into(array, dataset, preprocess, strict, progress, f"decoding {dataset.split} images")
    return PixelSet(array[: len(indices)], indices, [(dataset.samples[i].id, r) for i, r in skipped])


def _load_cached(dataset: Dataset, preprocess: PreprocessConfig, strict: bool, progress: ProgressReporter) -> PixelSet:
    from medclip_cli.data.cache import CacheEntry, content_hashes

    entry = CacheEntry.for_dataset(content_hashes(dataset, progress), preprocess)
    found = entry.read(dataset)
    if found is None:
        label = f"caching {dataset.split} images ({preprocess.image_size} px)"
        entry.write(
            dataset,
            preprocess.image_size,
            lambda out, reuse: _decode_into(out, dataset, preprocess, strict, progress, label, reuse),
        )
        found = entry.read(dataset)
        if found is None:
            raise OSError(f"{entry.meta_path}: cache entry unreadable right after writing it")
    array, indices, skipped = found
    if strict and skipped:
        raise DataError(skipped[0][1], hint=_STRICT_HINT)
    return PixelSet(array, indices, skipped)


def _decode_into(
    out: np.ndarray,
    dataset: Dataset,
    preprocess: PreprocessConfig,
    strict: bool,
    progress: ProgressReporter,
    label: str,
    reuse: Callable[[int], np.ndarray | None] | None = None,
) -> tuple[list[int], list[tuple[int, str]]]:
    """Fill ``out`` with the decodable images in order; returns (their indices, (index, reason) skips).

    ``reuse(i)`` may give sample i's pixels already decoded (an unchanged file in the cache).
    Sample i is decoded into row i (by several processes when ``out`` is a file-backed memory map
    and there are enough images, see :mod:`medclip_cli.data.decode_pool`); the rows of skipped
    images are then closed up in order and the rows left over at the end zeroed, so the result,
    byte for byte, does not depend on the number of processes.
    """
    from medclip_cli.data.decode_pool import MIN_PARALLEL, can_start_workers, decode_in_workers, decode_workers

    task = progress.task(label, total=len(dataset))
    todo: list[int] = []
    for i in range(len(dataset)):
        known = reuse(i) if reuse is not None else None
        if known is None:
            todo.append(i)
        else:
            out[i] = known
            progress.advance(task)
    failed: dict[int, str] = {}
    filename = getattr(out, "filename", None)
    workers = min(decode_workers(), len(todo) // 8 or 1)
    if filename is not None and workers > 1 and len(todo) >= MIN_PARALLEL and can_start_workers():
        out.flush()
        images = [(i, dataset.samples[i].path) for i in todo]
        failed = decode_in_workers(filename, images, preprocess, workers, strict=strict, advance=lambda n: progress.advance(task, n))
        if strict and failed:
            raise DataError(next(iter(failed.values())), hint=_STRICT_HINT)
    else:
        for i in todo:
            try:
                out[i] = resize_to_uint8(load_image(dataset.samples[i].path), preprocess)
            except ImageError as exc:
                if strict:
                    raise DataError(str(exc), hint=_STRICT_HINT) from exc
                failed[i] = str(exc)
            progress.advance(task)
    indices = [i for i in range(len(dataset)) if i not in failed]
    if failed:
        for row, i in enumerate(indices):
            if row != i:
                out[row] = out[i]
        out[len(indices) :] = 0
    progress.done(task)
    return indices, sorted(failed.items())
