"""Image-folder data sets: root/<split>/<class>/* and root/<class>/*."""

from __future__ import annotations

import pytest

from medclip_cli.data import list_splits, load_dataset, resolve_format
from medclip_cli.errors import DataError, UsageError

from .conftest import write_png


def test_split_layout(tmp_path):
    root = tmp_path / "scans"
    write_png(root / "train" / "CT" / "1.png", 1)
    write_png(root / "train" / "CT" / "sub" / "2.PNG", 2)
    write_png(root / "train" / "MR" / "3.png", 3)
    write_png(root / "val" / "MR" / "4.png", 4)
    (root / "train" / "MR" / "notes.txt").write_text("not an image")
    (root / "train" / "MR" / ".hidden.png").write_bytes(b"")
    assert resolve_format(root).name == "folder"
    assert list_splits(root) == ["train", "val"]
    ds = load_dataset(root, "train")
    assert [(s.id, s.labels["label"]) for s in ds.samples] == [
        ("train/CT/1.png", "CT"),
        ("train/CT/sub/2.PNG", "CT"),
        ("train/MR/3.png", "MR"),
    ]
    assert all(s.caption is None for s in ds.samples)
    assert ds.label_fields["label"].classes == ("CT", "MR")
    with pytest.raises(DataError, match=r"no split 'test' \(available: train, val\)"):
        load_dataset(root, "test")


def test_class_layout_with_labels_file(tmp_path):
    root = tmp_path / "scans"
    write_png(root / "brain_mri" / "1.png", 1)
    write_png(root / "chest_ct" / "2.png", 2)
    write_png(root / "other" / "3.png", 3)
    write_png(root / "stray.png", 4)
    labels = tmp_path / "labels.toml"
    labels.write_text('[label.classes]\nbrain_mri = "brain MRI"\nchest_ct = "chest CT"\n')
    assert list_splits(root) == ["all"]
    ds = load_dataset(root, "all", labels_file=labels)
    assert [s.labels["label"] for s in ds.samples] == ["brain_mri", "chest_ct"]
    assert ds.label_fields["label"].readable_name("chest_ct") == "chest CT"
    assert any("'other' is not in [label]" in p for p in ds.problems)
    assert any("1 images outside a class folder (e.g. stray.png)" in p for p in ds.problems)


def test_dicom_without_extension_is_an_image(tmp_path):
    import numpy as np

    from .test_images import write_dicom

    (tmp_path / "CT").mkdir()
    write_dicom(tmp_path / "CT" / "IM0001", np.full((4, 4), 1100))
    write_png(tmp_path / "MR" / "1.png", 1)
    ds = load_dataset(tmp_path, "all")
    assert [s.id for s in ds.samples] == ["CT/IM0001", "MR/1.png"]


def test_folder_refuses_csv_options(tmp_path):
    write_png(tmp_path / "a" / "1.png", 1)
    with pytest.raises(UsageError, match="does not apply to image folders"):
        load_dataset(tmp_path, "all", format="folder", caption_column="x")


def test_empty_folder_is_not_detected(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match="cannot tell the data-set format"):
        load_dataset(tmp_path, "all")
