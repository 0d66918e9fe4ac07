"""Small generated data sets in the MedPix 2.0 layout, with labels and captions we choose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_medpix(root: Path, split: str, records: list[dict], size: int = 40) -> Path:
    """A MedPix-2-0 folder whose split ``split`` holds one image per record.

    Each record: ``image`` (name), and optional ``modality``, ``location_category``, ``plane``, ``caption``.
    """
    base = root / "MedPix-2-0"
    (base / "splitted_dataset").mkdir(parents=True, exist_ok=True)
    (base / "images").mkdir(exist_ok=True)
    rng = np.random.default_rng(len(records))
    lines = []
    for r in records:
        pixels = rng.integers(0, 256, size=(size, size + 8), dtype=np.uint8)
        Image.fromarray(pixels, mode="L").save(base / "images" / f"{r['image']}.png")
        lines.append(
            json.dumps(
                {
                    "Type": r.get("modality"),
                    "U_id": r["image"].split("_")[0],
                    "image": r["image"],
                    "Description": {"Caption": r.get("caption"), "Plane": r.get("plane")},
                    "Location": None,
                    "Location Category": r.get("location_category"),
                }
            )
        )
    (base / "splitted_dataset" / f"descriptions_{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def make_medpix(tmp_path):
    def make(records: list[dict], split: str = "test") -> Path:
        return write_medpix(tmp_path / "data", split, records)

    return make
