"""Small image sets built in tmp_path for the data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_png(path: Path, seed: int, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> Path:
    """A random image of ``size`` (width, height), different for each seed."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        Image.fromarray(rng.integers(0, 4096, size[::-1], dtype=np.uint16)).save(path)
    else:
        Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """tmp/data/img/a0.png ... a4.png (five distinct RGB images)."""
    root = tmp_path / "data"
    for i in range(5):
        write_png(root / "img" / f"a{i}.png", seed=i)
    return root
