"""``medclip data check`` on the real MedPix copy, a broken copy, and generated manifests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .conftest import write_png


def _dev_copy(medpix_root: Path, dest: Path) -> Path:
    """The dev split of MedPix 2.0 with its 197 images, copied into ``dest``."""
    src = medpix_root / "MedPix-2-0"
    root = dest / "MedPix-2-0"
    (root / "splitted_dataset").mkdir(parents=True)
    (root / "images").mkdir()
    jsonl = src / "splitted_dataset" / "descriptions_dev.jsonl"
    shutil.copy(jsonl, root / "splitted_dataset")
    for line in jsonl.read_text().splitlines():
        name = json.loads(line)["image"]
        shutil.copy(src / "images" / f"{name}.png", root / "images")
    return root


def test_check_real_medpix(cli, medpix_root):
    result = cli("data", "check", medpix_root, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["errors"] == 0 and report["format"] == "medpix2"
    train, dev = report["splits"]
    assert (train["split"], train["samples"], train["images_ok"], train["captions"]) == ("train", 1653, 1653, 1653)
    assert (dev["split"], dev["samples"], dev["images_ok"]) == ("dev", 197, 197)
    assert dev["classes"]["modality"] == {"CT": 84, "MR": 113}
    assert sum(train["classes"]["location_category"].values()) == 1653
    # CLIP's tokenizer cuts captions at 77 tokens; MedPix captions average 180 characters.
    assert 0 < dev["truncated_captions"] < 197 and dev["longest_caption_tokens"] > 77
    assert report["text_encoder"] == "clip-text" and report["context_length"] == 77


def test_check_table_names_truncated_and_missing_images(cli, medpix_root, tmp_path):
    root = _dev_copy(medpix_root, tmp_path)
    images = sorted((root / "images").iterdir())
    truncated, missing = images[3], images[10]
    truncated.write_bytes(truncated.read_bytes()[:300])
    missing.unlink()
    result = cli("data", "check", tmp_path)
    assert result.exit_code == 1
    output = " ".join(result.output.split())  # rich may wrap long lines
    assert f"{truncated}: corrupt or truncated image" in output
    assert f"missing image {missing}" in output
    assert "2 error(s) found" in output
    assert "dev" in output and "197" in output and "195" in output  # samples, readable


def test_check_csv_counts_empty_captions_duplicates_and_skipped_rows(cli, tmp_path):
    write_png(tmp_path / "a.png", 1)
    write_png(tmp_path / "b.png", 2)
    (tmp_path / "c.png").write_bytes((tmp_path / "a.png").read_bytes())
    (tmp_path / "m.csv").write_text(
        "image,caption,modality,split\na.png,x,CT,train\nb.png,,MR,train\nc.png,y,CT,train\n"
        "../x.png,z,CT,train\na.png,dev copy,CT,dev\n"
    )
    result = cli("data", "check", tmp_path / "m.csv", "--encoder", "test-vit", "--json")
    assert result.exit_code == 1  # the row pointing outside the folder was skipped
    report = json.loads(result.stdout)
    train = report["splits"][0]
    assert train["empty_captions"] == 1 and train["captions"] == 2
    assert train["duplicates"] == [["a.png", "c.png"]]
    assert train["classes"]["modality"] == {"CT": 2, "MR": 1}
    assert len(train["problems"]) == 1 and "m.csv line 5" in train["problems"][0]
    assert report["shared_across_splits"] == [["train:a.png", "dev:a.png"]]


def test_check_folder_without_captions_is_clean(cli, tmp_path):
    write_png(tmp_path / "CT" / "1.png", 1)
    write_png(tmp_path / "MR" / "2.png", 2)
    result = cli("data", "check", tmp_path, "--json")
    assert result.exit_code == 0
    split = json.loads(result.stdout)["splits"][0]
    assert (split["split"], split["empty_captions"], split["truncated_captions"]) == ("all", 0, 0)
    assert split["classes"] == {"label": {"CT": 1, "MR": 1}}


def test_check_without_path_needs_a_download(cli):
    result = cli("data", "check")
    assert result.exit_code == 1
    assert "MedPix 2.0 is not downloaded" in result.output and "medclip data download medpix2" in result.output


def test_fingerprint_is_computed_once_per_dataset(tmp_path, monkeypatch):
    import os

    from medclip_cli.data.dataset import Dataset, Sample

    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    dataset = Dataset("csv", tmp_path, "train", [Sample("a", image, "one")], {})
    first = dataset.fingerprint()
    stats = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda path, **kw: stats.append(os.fspath(path)) or real_stat(path, **kw))
    assert dataset.fingerprint() == first and not stats  # memoised: no file is stat'ed again
    dataset.samples = [Sample("a", image, "another caption")]
    assert dataset.fingerprint() != first and stats == [str(image)]  # other samples: computed again
