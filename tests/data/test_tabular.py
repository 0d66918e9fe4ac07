"""CSV and JSONL manifests: delimiters, quoting, paths, columns, splits, readable names, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medclip_cli.data import list_splits, load_dataset, resolve_format
from medclip_cli.errors import DataError, UsageError


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def test_csv_sniffs_semicolons_bom_and_quoted_delimiters(image_dir):
    manifest = _write(
        image_dir / "pairs.csv",
        'image;caption;modality\nimg/a0.png;"axial CT; liver";CT\nimg/a1.png;plain caption;MR\n',
        encoding="utf-8-sig",
    )
    ds = load_dataset(manifest, "all")
    assert resolve_format(manifest).name == "csv"
    assert [s.caption for s in ds.samples] == ["axial CT; liver", "plain caption"]
    assert ds.samples[0].image == image_dir / "img" / "a0.png"
    assert ds.samples[0].labels == {"modality": "CT"}
    assert ds.label_fields["modality"].classes == ("CT", "MR")
    assert ds.label_fields["modality"].readable_name("CT") == "CT"  # no labels file: the raw value


def test_csv_quoted_commas_and_multiline_captions_keep_line_numbers(image_dir):
    manifest = _write(
        image_dir / "pairs.csv",
        'image,caption\nimg/a0.png,"first line,\nsecond line"\n../outside.png,escapes\nimg/a1.png,ok\n',
    )
    ds = load_dataset(manifest, "all")
    assert [s.caption for s in ds.samples] == ["first line,\nsecond line", "ok"]
    # The multi-line row took lines 2-3, so the escaping row is line 4.
    assert ds.problems == [f"pairs.csv line 4: image path '../outside.png' points outside {image_dir}; skipped"]


def test_csv_refuses_absolute_paths_outside_and_duplicates(image_dir, tmp_path):
    outside = tmp_path / "elsewhere.png"
    manifest = _write(
        image_dir / "m.tsv",
        f"path\ttext\n{outside}\ta\n{image_dir / 'img' / 'a2.png'}\tb\nimg/a2.png\tc\nimg/../img/a3.png\td\n",
    )
    ds = load_dataset(manifest, "all")
    assert [s.image.name for s in ds.samples] == ["a2.png", "a3.png"]
    assert len(ds.problems) == 2
    assert "line 2" in ds.problems[0] and "outside" in ds.problems[0]
    assert "line 4: duplicate image" in ds.problems[1]


def test_csv_split_column_and_options(image_dir):
    manifest = _write(
        image_dir / "m.csv",
        "file,report,part,body\nimg/a0.png,x,val,head\nimg/a1.png,y,train,chest\nimg/a2.png,z,train,head\n",
    )
    opts = dict(image_column="file", caption_column="report", split_column="part", label_columns=("body",))
    assert list_splits(manifest, **opts) == ["train", "val"]
    train = load_dataset(manifest, "train", **opts)
    assert [s.caption for s in train.samples] == ["y", "z"]
    assert train.samples[0].id == "img/a1.png"
    with pytest.raises(DataError, match=r"no rows of split 'test' \(splits: train, val\)"):
        load_dataset(manifest, "test", **opts)


def test_csv_labels_file_gives_readable_names_and_aliases(image_dir, tmp_path):
    labels = _write(
        tmp_path / "labels.toml",
        '[modality.classes]\nCT = "computed tomography"\nMR = "magnetic resonance imaging"\n'
        '[modality.aliases]\nMRI = "MR"\n',
    )
    manifest = _write(
        image_dir / "m.csv", "image,caption,modality\nimg/a0.png,a,CT\nimg/a1.png,b,MRI\nimg/a2.png,c,PET\n"
    )
    ds = load_dataset(manifest, "all", labels_file=labels)
    assert [s.labels.get("modality") for s in ds.samples] == ["CT", "MR", None]  # PET is not a listed class
    assert ds.label_fields["modality"].readable_name("MR") == "magnetic resonance imaging"


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("caption\nx\n", {}, r"m\.csv: no image column \(columns: caption\) \(name it with --image-column\)"),
        ("image,caption\na.png,x\n", {"caption_column": "report"}, r"no column 'report' \(columns: image, caption\)"),
        ("image,caption\na.png,x,extra\n", {}, r"m\.csv line 2: 3 fields, the header has 2"),
        ("image,image\na.png,b.png\n", {}, r"line 1: column 'image' appears twice"),
        ("", {}, r"empty file"),
    ],
)
def test_csv_errors_name_file_line_and_option(tmp_path, text, options, message):
    manifest = _write(tmp_path / "m.csv", text)
    with pytest.raises(DataError, match=message):
        load_dataset(manifest, "all", **options)


def test_csv_not_utf8_names_the_line(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("image,caption\na.png,ok\nb.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"m\.csv line 3: not UTF-8"):
        load_dataset(manifest, "all")


def test_csv_without_split_column_has_only_all(image_dir):
    manifest = _write(image_dir / "m.csv", "image\nimg/a0.png\n")
    assert list_splits(manifest) == ["all"]
    with pytest.raises(DataError, match=r"no split column.*--split all"):
        load_dataset(manifest, "train")


def test_unknown_option_is_a_usage_error(image_dir):
    manifest = _write(image_dir / "m.csv", "image\nimg/a0.png\n")
    with pytest.raises(UsageError, match="unknown data-set option 'imag_column'"):
        load_dataset(manifest, "all", imag_column="x")


def test_jsonl_nested_keys_splits_and_line_numbers(image_dir):
    records = [
        {"image": "img/a0.png", "Description": {"Caption": "one"}, "split": "train", "Type": "CT"},
        {"image": "img/a1.png", "Description": {"Caption": "two"}, "split": "dev", "Type": "MR"},
    ]
    manifest = _write(image_dir / "m.jsonl", "\n".join(json.dumps(r) for r in records) + "\n\n")
    assert resolve_format(manifest).name == "jsonl"
    assert list_splits(manifest) == ["train", "dev"]
    ds = load_dataset(manifest, "dev", caption_column="Description.Caption", label_columns="Type")
    assert [(s.caption, s.labels) for s in ds.samples] == [("two", {"Type": "MR"})]

    bad = _write(image_dir / "bad.jsonl", json.dumps(records[0]) + "\n\n{not json}\n")
    with pytest.raises(DataError, match=r"bad\.jsonl line 3: malformed JSON"):
        load_dataset(bad, "train")
    not_object = _write(image_dir / "list.jsonl", "[1, 2]\n")
    with pytest.raises(DataError, match=r"list\.jsonl line 1: expected a JSON object, got list"):
        load_dataset(not_object, "all")


def test_jsonl_reads_the_medpix_split_files(medpix_root):
    manifest = medpix_root / "MedPix-2-0" / "splitted_dataset" / "descriptions_dev.jsonl"
    ds = load_dataset(
        manifest,
        "all",
        format="jsonl",
        caption_column="Description.Caption",
        label_columns=("Type",),
        image_root=medpix_root / "MedPix-2-0",
        id_column="image",
    )
    # Image names lack the .png suffix in MedPix, so they do not exist as given: the check reports them.
    assert len(ds) == 197 and ds.label_fields["Type"].classes == ("CT", "MR")
