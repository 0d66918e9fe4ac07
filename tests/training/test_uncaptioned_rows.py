"""A split whose images lack some captions indexes the decode cache instead of copying it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medclip_cli.data import Dataset, Sample
from medclip_cli.progress import NullProgress
from medclip_cli.training.batches import Batches, load_pairs
from medclip_cli.training.config import TrainConfig
from tests.data.conftest import write_png


class _OneProcess:
    rank, world_size = 0, 1


def test_pairs_index_the_memory_map_and_batches_hold_the_captioned_images(tmp_path: Path):
    from medclip_cli.data.pixels import load_pixels
    from medclip_cli.models import resolve_model

    samples = [
        Sample(f"s{k}", write_png(tmp_path / f"s{k}.png", k), None if k % 3 == 1 else f"caption {k}") for k in range(12)
    ]
    dataset = Dataset("test", tmp_path, "train", samples, {})
    model = resolve_model(encoder="test-vit", pretrained="none")
    pairs = load_pairs(dataset, model, strict=False, progress=NullProgress(), soft_label=None, soft=False)
    assert len(pairs) == 8 and pairs.captions[1] == "caption 2"
    assert isinstance(pairs.pixels, np.memmap) and len(pairs.pixels) == 12  # the cache itself, not a copy
    decoded = load_pixels(dataset, model.preprocess, cache=False).array
    kept = decoded[[k for k in range(12) if k % 3 != 1]]
    np.testing.assert_array_equal(pairs.pixel_batch(0, 8), kept)

    cfg = TrainConfig(output=tmp_path, data=tmp_path, batch_size=4)
    batches = Batches(pairs, cfg, torch.device("cpu"), _OneProcess(), [(0, 0, 2)])
    order = batches.order_of(0).numpy()
    got = [b[0] for b in batches]
    np.testing.assert_array_equal(torch.cat(got).numpy(), kept[order[:8]])
