"""CSV and folder data sets built over the real MedPix images read the same pixels as MedPix."""

from __future__ import annotations

import csv

import numpy as np

from medclip_cli.data import load_dataset
from medclip_cli.data.pixels import load_pixels
from medclip_cli.data.preprocess import PreprocessConfig


def test_csv_over_medpix_images_matches_the_medpix_reader(medpix_root, tmp_path):
    medpix = load_dataset(medpix_root, "dev")
    manifest = tmp_path / "dev.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=";")
        writer.writerow(["file", "caption", "modality"])
        for s in medpix.samples:  # real captions hold commas, quotes and semicolons
            writer.writerow([s.image.name, s.caption, s.labels["modality"]])
    ds = load_dataset(manifest, "all", image_column="file", image_root=medpix_root / "MedPix-2-0" / "images")
    assert [s.caption for s in ds.samples] == [s.caption for s in medpix.samples]
    assert ds.problems == []
    cfg = PreprocessConfig(image_size=64)
    assert np.array_equal(load_pixels(ds, cfg).array, load_pixels(medpix, cfg).array)


def test_folder_of_medpix_images_by_modality(medpix_root, tmp_path):
    medpix = load_dataset(medpix_root, "dev")
    for s in medpix.samples:
        link = tmp_path / "val" / s.labels["modality"] / s.image.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(s.image)
    ds = load_dataset(tmp_path, "val")
    assert ds.format == "folder"
    counts = {c: sum(s.labels["label"] == c for s in ds.samples) for c in ds.label_fields["label"].classes}
    assert counts == {"CT": 84, "MR": 113}
