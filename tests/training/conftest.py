"""A small MedPix 2.0 copy (first records of train and dev, images linked) so training tests run in seconds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import MEDPIX_ROOT


def make_small_medpix(target: Path, n_train: int, n_dev: int) -> Path:
    source = MEDPIX_ROOT / "MedPix-2-0"
    if not (source / "splitted_dataset").is_dir():
        pytest.skip(f"MedPix 2.0 copy not found at {MEDPIX_ROOT}")
    root = target / "MedPix-2-0"
    (root / "splitted_dataset").mkdir(parents=True)
    os.symlink(source / "images", root / "images")
    for split, n in (("train", n_train), ("dev", n_dev)):
        lines = (source / "splitted_dataset" / f"descriptions_{split}.jsonl").read_text(encoding="utf-8").splitlines()
        (root / "splitted_dataset" / f"descriptions_{split}.jsonl").write_text(
            "\n".join(lines[:n]) + "\n", encoding="utf-8"
        )
    return target


@pytest.fixture(scope="module")
def small_medpix(tmp_path_factory) -> Path:
    """96 training and 32 validation pairs of the real MedPix 2.0."""
    return make_small_medpix(tmp_path_factory.mktemp("medpix_small"), 96, 32)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
