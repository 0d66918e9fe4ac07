"""Data sets kept as symbolic links (DataLad, git-annex, DVC) load; names are judged, not link targets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from medclip_cli.data import load_dataset
from medclip_cli.data.images import load_image


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(24, 24), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(path)


def _annexed(images: Path, store: Path, name: str, seed: int) -> None:
    """``images/name`` as git-annex keeps it: a relative link into an object store outside images/."""
    obj = store / f"MD5E-s{seed}--{seed:032x}.png" / f"MD5E-s{seed}--{seed:032x}.png"
    _png(obj, seed)
    images.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(obj, images), images / name)


def _broken_links(images: Path) -> None:
    os.symlink("../.git/annex/objects/not-fetched.png", images / "missing.png")  # `datalad get` not run yet
    os.symlink("loop.png", images / "loop.png")


def test_annexed_medpix_layout_loads_and_reports_broken_links(tmp_path):
    root = tmp_path / "MedPix-2-0"
    images, store = root / "images", root / ".git" / "annex" / "objects"
    for i in range(3):
        _annexed(images, store, f"img{i}.png", i + 1)
    _broken_links(images)
    names = ["img0", "img1", "img2", "missing", "loop", "../img0", "sub/img1"]
    (root / "splitted_dataset").mkdir()
    lines = [json.dumps({"image": n, "Type": "CT", "Description": {"Caption": f"c {n}"}}) for n in names]
    (root / "splitted_dataset" / "descriptions_train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    ds = load_dataset(tmp_path, "train")
    assert [s.id for s in ds.samples] == ["img0", "img1", "img2"]
    assert all(s.image.parent == images for s in ds.samples)  # the link's own path, not the object store
    problems = "\n".join(ds.problems)
    assert "record 4: missing.png: dangling symbolic link (to ../.git/annex/objects/not-fetched.png); skipped" in problems
    assert "datalad get" in problems
    assert "record 5: loop.png: symbolic link loop; skipped" in problems
    assert "record 6: image name '../img0' holds a path separator" in problems
    assert "record 7: image name 'sub/img1' holds a path separator" in problems
    assert load_image(ds.samples[0].image).size == (24, 24)  # read through the link


def test_linked_image_folder_and_csv_load(tmp_path):
    store = tmp_path / "store"
    folder = tmp_path / "folder"
    for i, cls in enumerate(["CT", "CT", "MR", "MR"]):
        _annexed(folder / cls, store, f"x{i}.png", i + 10)
    _broken_links(folder / "MR")
    ds = load_dataset(folder, "all")
    assert sorted(s.id for s in ds.samples) == ["CT/x0.png", "CT/x1.png", "MR/x2.png", "MR/x3.png"]
    assert any("MR/loop.png: symbolic link loop; skipped" in p for p in ds.problems)
    assert any("MR/missing.png: dangling symbolic link" in p for p in ds.problems)

    table = tmp_path / "table"
    for i in range(2):
        _annexed(table / "img", store, f"t{i}.png", i + 20)
    _broken_links(table / "img")
    rows = ["image,caption,label", "img/t0.png,a,CT", "img/t1.png,b,MR", "img/missing.png,c,CT", "img/loop.png,d,MR"]
    (table / "pairs.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    ds = load_dataset(table / "pairs.csv", "all")
    assert [s.image.name for s in ds.samples] == ["t0.png", "t1.png"]
    assert any("line 4: missing.png: dangling symbolic link" in p for p in ds.problems)
    assert any("line 5: loop.png: symbolic link loop" in p for p in ds.problems)
