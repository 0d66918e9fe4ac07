"""Decoded, resized pixels of a data set: what training and evaluation feed the model."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medclip_cli.data.dataset import Dataset
from medclip_cli.data.images import load_image
from medclip_cli.data.preprocess import PreprocessConfig, resize_to_uint8
from medclip_cli.engine.progress import NullProgress, ProgressReporter
from medclip_cli.errors import DataError, ImageError


@dataclass
class PixelSet:
    """uint8 images ``array[N, H, W, 3]`` for the samples ``dataset.samples[indices[i]]``."""

    array: np.ndarray
    indices: list[int]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (sample id, reason)

    def __len__(self) -> int:
        return len(self.indices)


def load_pixels(
    dataset: Dataset,
    preprocess: PreprocessConfig,
    *,
    strict: bool = False,
    progress: ProgressReporter | None = None,
) -> PixelSet:
    """Decode and resize every image of ``dataset`` once.

    A missing, empty or corrupt image is skipped and listed in ``skipped``; with ``strict`` it
    stops the run with a :class:`DataError` naming the file.
    """
    progress = progress or NullProgress()
    size = preprocess.image_size
    array = np.empty((len(dataset), size, size, 3), dtype=np.uint8)
    indices: list[int] = []
    skipped: list[tuple[str, str]] = []
    task = progress.task(f"decoding {dataset.split} images", total=len(dataset))
    for i, sample in enumerate(dataset.samples):
        try:
            array[len(indices)] = resize_to_uint8(load_image(sample.image), preprocess)
            indices.append(i)
        except ImageError as exc:
            if strict:
                raise DataError(str(exc), hint="fix or remove the file, or run without --strict to skip it") from exc
            skipped.append((sample.id, str(exc)))
        progress.advance(task)
    progress.done(task)
    return PixelSet(array[: len(indices)], indices, skipped)
