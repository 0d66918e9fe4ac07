"""WebDataset tar shards: ``medclip data shard`` writes them, the webdataset format reads them back."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from medclip_cli.data import load_dataset, list_splits
from medclip_cli.data.pixels import load_pixels
from medclip_cli.data.preprocess import PreprocessConfig
from medclip_cli.errors import DataError

from .conftest import write_png


def _manifest(root: Path) -> Path:
    rows = ["image,caption,modality,split"]
    for k in range(7):
        write_png(root / "img" / f"a{k}.png", k, size=(30 + k, 24))
        caption = "" if k == 4 else f"scan number {k}"
        rows.append(f"img/a{k}.png,{caption},{'CT' if k % 2 else 'MRI'},{'train' if k < 5 else 'dev'}")
    (root / "pairs.csv").write_text("\n".join(rows) + "\n")
    return root / "pairs.csv"


def test_shards_round_trip_samples_labels_and_pixels(tmp_path, cli):
    manifest = _manifest(tmp_path / "src")
    out = tmp_path / "shards"
    result = cli("data", "shard", manifest, "--output", out, "--samples-per-shard", "2", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)["splits"]
    assert {k: v["samples"] for k, v in summary.items()} == {"train": 5, "dev": 2}
    assert sorted(p.name for p in (out / "train").iterdir()) == ["00000.tar", "00001.tar", "00002.tar", "sizes.json"]
    assert list_splits(out) == ["dev", "train"]
    cfg = PreprocessConfig(image_size=16)
    for split in ("train", "dev"):
        source, shards = load_dataset(manifest, split), load_dataset(out, split)
        assert shards.format == "webdataset"
        assert [(s.id, s.caption, dict(s.labels)) for s in shards.samples] == [
            (s.id, s.caption, dict(s.labels)) for s in source.samples
        ]
        np.testing.assert_array_equal(load_pixels(shards, cfg).array, load_pixels(source, cfg, cache=False).array)
    assert load_dataset(out, "train").label_fields["modality"].classes == ("CT", "MRI")
    again = load_dataset(out, "train")  # unchanged shards: not unpacked again
    assert [s.image for s in again.samples] == [s.image for s in load_dataset(out, "train").samples]


def test_data_check_reads_shards_with_txt_only_members(tmp_path, cli):
    folder = tmp_path / "plain"
    folder.mkdir()
    with tarfile.open(folder / "00000.tar", "w") as archive:
        for k in range(3):
            image = write_png(tmp_path / f"x{k}.png", k)
            archive.add(image, arcname=f"sub/{k:04d}.png")
            caption = tmp_path / f"x{k}.txt"
            caption.write_text(f"caption {k}")
            archive.add(caption, arcname=f"sub/{k:04d}.txt")
    result = cli("data", "check", folder, "--json")
    assert result.exit_code == 0, result.output
    dataset = load_dataset(folder, "all")
    assert [s.caption for s in dataset.samples] == ["caption 0", "caption 1", "caption 2"]


def test_a_broken_shard_is_one_clear_error(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "00000.tar").write_bytes(b"this is not a tar archive" * 40)
    with pytest.raises(DataError, match=r"00000\.tar: not a readable tar shard"):
        load_dataset(folder, "all", "webdataset")


def test_samples_per_shard_below_one_is_a_usage_error(tmp_path, cli):
    result = cli("data", "shard", _manifest(tmp_path / "src"), "--output", tmp_path / "out", "--samples-per-shard", "0")
    assert result.exit_code == 2 and "--samples-per-shard 0: must be 1 or more" in result.output
    assert not (tmp_path / "out").exists()


def test_embed_reads_shards_as_it_reads_their_source(tmp_path, cli):
    import pandas as pd

    manifest = _manifest(tmp_path / "src")
    out = tmp_path / "shards"
    assert cli("data", "shard", manifest, "--output", out, "--samples-per-shard", "2").exit_code == 0
    frames = []
    for data, name in ((manifest, "source.parquet"), (out, "shards.parquet")):
        result = cli("embed", "--data", data, "--split", "train", "--split", "dev", "--encoder", "test-vit",
                     "--device", "cpu", "-o", tmp_path / name, "--json")  # fmt: skip
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["rows"] == 7
        frames.append(pd.read_parquet(tmp_path / name))
    source, shards = frames
    assert list(shards["id"]) == list(source["id"]) and list(shards["caption"]) == list(source["caption"])
    assert list(shards["label:modality"]) == list(source["label:modality"])
    np.testing.assert_allclose(np.stack(shards["image_embedding"]), np.stack(source["image_embedding"]), atol=1e-6)
