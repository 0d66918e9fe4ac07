"""``medclip embed`` and ``medclip search`` end to end with the tiny test encoders, on generated
data sets and on the real MedPix 2.0 dev split where present."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medclip_cli.evaluation.embed_file import read_embedding_file, write_embedding_file
from medclip_cli.evaluation.search import brute_force, faiss_available, nearest

RECORDS = [
    {"image": f"MPX{i}_synpic{i}", "modality": "CT" if i % 2 else "MR", "plane": "Axial", "caption": f"case {i % 3}"}
    for i in range(8)
]


def _embed(cli, data, out, *extra):
    return cli("embed", "--data", data, "--encoder", "test-vit", "--device", "cpu", "-o", out, "--json", *extra)


def test_embed_writes_parquet_and_npz_with_identity_and_reruns_cheaply(cli, make_medpix, tmp_path):
    data = make_medpix(RECORDS, split="test")
    out = tmp_path / "emb.parquet"
    first = _embed(cli, data, out)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["rows"] == 8 and summary["up_to_date"] is False and summary["captions_embedded"] == 8
    frame = pd.read_parquet(out)  # a plain Parquet file any tool reads
    assert list(frame["id"]) == [r["image"] for r in RECORDS]
    assert list(frame["label:modality"]) == [r["modality"] for r in RECORDS]
    vectors = np.stack(frame["image_embedding"].to_numpy())
    assert vectors.shape == (8, 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    table = read_embedding_file(out)
    assert table.identity["image_encoder"] == "test-vit" and len(table.identity["weights_sha256"]) == 64
    assert table.identity["preprocess"]["image_size"] == 32
    # Equal captions share one text embedding; each caption's vector is unit length.
    assert np.allclose(table.text[0], table.text[3]) and np.allclose(np.linalg.norm(table.text, axis=1), 1.0, atol=1e-5)

    again = _embed(cli, data, out)
    assert json.loads(again.stdout)["up_to_date"] is True  # nothing computed or written

    npz = tmp_path / "emb.npz"
    assert _embed(cli, data, npz).exit_code == 0
    other = read_embedding_file(npz)
    assert other.ids == table.ids and other.labels == table.labels and other.captions == table.captions
    assert np.array_equal(other.image, table.image) and np.allclose(other.text, table.text)
    assert json.loads(_embed(cli, data, npz).stdout)["from_cache"] is True


def test_embed_reuses_evaluates_cache(cli, make_medpix, tmp_path):
    data = make_medpix(RECORDS, split="test")
    evaluated = cli("evaluate", "--data", data, "--split", "test", "--task", "modality", "--encoder", "test-vit", "--device", "cpu", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    result = _embed(cli, data, tmp_path / "e.parquet", "--split", "test")
    assert json.loads(result.stdout)["from_cache"] is True


def test_embedding_file_of_another_model_or_preprocessing_is_refused(cli, make_medpix, tmp_path):
    data = make_medpix(RECORDS, split="test")
    out = tmp_path / "emb.parquet"
    assert _embed(cli, data, out).exit_code == 0
    before = out.read_bytes()
    other = cli("embed", "--data", data, "--encoder", "test-resnet", "--device", "cpu", "-o", out)
    assert other.exit_code == 1
    assert "cannot mix embeddings of different models" in other.stderr and len(other.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == before  # nothing lost
    # The same weights with another preprocessing (a copy of a bundle that squashes instead of
    # cropping): refused as such.
    first, second = _bundles_differing_in_preprocessing(tmp_path)
    other_out = tmp_path / "bundle.parquet"
    assert cli("embed", "--data", data, "--model", first, "--device", "cpu", "-o", other_out).exit_code == 0
    resized = cli("embed", "--data", data, "--model", second, "--device", "cpu", "-o", other_out)
    assert resized.exit_code == 1 and "cannot mix embeddings of different preprocessing" in resized.stderr
    # A search whose query model is another one is refused the same way.
    mixed = cli("search", out, "axial CT", "--encoder", "test-resnet", "--device", "cpu")
    assert mixed.exit_code == 1 and "cannot mix embeddings of different models" in mixed.stderr
    assert cli("embed", "--data", data, "--encoder", "test-resnet", "--device", "cpu", "-o", out, "--overwrite").exit_code == 0
    assert read_embedding_file(out).identity["image_encoder"] == "test-resnet"


def _bundles_differing_in_preprocessing(tmp_path):
    import shutil

    import torch

    from medclip_cli.models import resolve_model
    from medclip_cli.models.bundle import CONFIG_NAME, save_bundle

    torch.manual_seed(0)
    first = save_bundle(resolve_model(None, "test-vit", None, "none"), tmp_path / "crop")
    second = tmp_path / "squash"
    shutil.copytree(first, second)
    config = json.loads((second / CONFIG_NAME).read_text())
    config["preprocess_cfg"]["resize_mode"] = "squash"
    (second / CONFIG_NAME).write_text(json.dumps(config))
    return first, second


def test_probe_refuses_embedding_files_of_two_models(cli, make_medpix, tmp_path):
    data = make_medpix(RECORDS, split="test")
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert _embed(cli, data, a).exit_code == 0
    assert cli("embed", "--data", data, "--encoder", "test-resnet", "--device", "cpu", "-o", b).exit_code == 0
    result = cli("probe", "--embeddings", a, "--embeddings", b, "--train-split", "train", "--eval-split", "test")
    assert result.exit_code == 1 and "cannot mix embeddings of different models" in result.stderr


def test_image_folder_and_its_bad_inputs(cli, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.png", "c.jpg"):
        Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).convert("RGB").save(folder / name)
    out = tmp_path / "scans.npz"
    result = _embed(cli, folder, out)
    assert result.exit_code == 0, result.output
    flat = read_embedding_file(out)
    assert flat.ids == ["a.png", "b.png", "c.jpg"] and flat.labels == {} and flat.split_names() == ["all"]
    # Class folders are the image-folder data-set format: the folder names become labels.
    classes = tmp_path / "classes"
    for name in ("ct/a.png", "ct/b.png", "mr/c.png"):
        (classes / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(classes / name)
    assert _embed(cli, classes, tmp_path / "classes.npz").exit_code == 0
    assert read_embedding_file(tmp_path / "classes.npz").labels == {"label": ["ct", "ct", "mr"]}

    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("embed", "--data", empty, "--encoder", "test-vit", "-o", tmp_path / "x.parquet")
    assert result.exit_code == 1 and "no images in this folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    bad_suffix = cli("embed", "--data", folder, "--encoder", "test-vit", "-o", tmp_path / "x.csv")
    assert bad_suffix.exit_code == 1 and ".parquet or .npz" in bad_suffix.stderr


@pytest.mark.parametrize("content", [b"PAR1 truncated", b"not an embedding file at all", b"PK\x03\x04broken zip"])
def test_corrupt_embedding_file_is_one_line(cli, tmp_path, content):
    path = tmp_path / "broken.parquet"
    path.write_bytes(content)
    for args in (("search", path, "axial CT"), ("probe", "--embeddings", path)):
        result = cli(*args)
        assert result.exit_code == 1
        assert "not a readable medclip embedding file" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_parquet_without_identity_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"id": ["a"], "image_embedding": [[1.0, 0.0]]}), path)
    from medclip_cli.errors import DataError

    with pytest.raises(DataError, match="without medclip metadata"):
        read_embedding_file(path)


def test_search_returns_a_known_neighbour_first_in_memory():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(5000, 64)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    query = matrix[1234] + 0.05 * rng.normal(size=64).astype(np.float32)
    query /= np.linalg.norm(query)
    for dtype in (np.float32, np.float16):
        found = brute_force(matrix.astype(dtype), query[None], 10, block=512)  # several blocks merged
        assert found.indices[0, 0] == 1234
        exact = np.argsort(-(matrix.astype(dtype).astype(np.float32) @ query), kind="stable")[:10]
        assert list(found.indices[0]) == list(exact)
        assert np.all(np.diff(found.scores[0]) <= 0)
    if faiss_available():
        for dtype in (np.float32, np.float16):
            via_faiss = nearest(matrix.astype(dtype), query[None], 10, backend="faiss")
            assert via_faiss.backend == "faiss" and list(via_faiss.indices[0]) == list(exact)


def test_search_cli_on_real_medpix(cli, medpix_root, tmp_path):
    out = tmp_path / "dev.parquet"
    made = cli("embed", "--data", medpix_root, "--split", "dev", "--encoder", "test-vit", "--device", "cpu", "-o", out, "--json")
    assert made.exit_code == 0, made.output
    table = read_embedding_file(out)
    assert len(table) == 197 and table.split_names() == ["dev"]
    target = table.paths[42]
    sheet = tmp_path / "hits.png"
    found = cli("search", out, "--image", target, "--top-k", "5", "--sheet", sheet, "--json")
    assert found.exit_code == 0, found.output
    hits = json.loads(found.stdout)["hits"]
    assert hits[0]["id"] == table.ids[42] and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5] and hits[0]["labels"]["modality"] in ("CT", "MR")
    with Image.open(sheet) as picture:
        assert picture.width > 5 * 150
    text = cli("search", out, "axial CT of the chest", "--top-k", "3")
    assert text.exit_code == 0 and "nearest to 'axial CT of the chest' (197 images, numpy)" in text.stdout
    both = cli("search", out, "axial CT", "--image", target)
    assert both.exit_code == 2 and "one of the two" in both.stderr


def test_written_file_round_trips_through_the_writer(tmp_path):
    from medclip_cli.evaluation.embed_file import EmbeddingTable

    image = np.eye(3, 4, dtype=np.float32)
    table = EmbeddingTable(image, ["a", "b", "c"], ["/a", "/b", "/c"], ["s"] * 3, [None, "x", None], {"f": ["1", None, "2"]},
                           {"name": "m", "weights_sha256": "0", "preprocess": {}, "embed_dim": 4},
                           text=np.array([[np.nan] * 4, [0, 1, 0, 0], [np.nan] * 4], dtype=np.float32))
    for name in ("t.parquet", "t.npz"):
        back = read_embedding_file(write_embedding_file(tmp_path / name, table))
        assert back.captions == table.captions and back.labels == table.labels
        assert np.array_equal(np.isnan(back.text), np.isnan(table.text))


def test_probe_writes_into_its_own_output_folder_again(cli, make_medpix, tmp_path):
    """A second `probe --output` into the same folder replaces the first run's files (it used to be
    refused by evaluate's check: 'holds files evaluate did not write (learning_curve_modality.png)');
    someone else's file still makes it refuse the folder."""
    data = make_medpix(RECORDS, split="train")
    make_medpix([{**r, "image": r["image"] + "0"} for r in RECORDS], split="test")
    emb = tmp_path / "emb.parquet"
    assert _embed(cli, data, emb, "--split", "train", "--split", "test").exit_code == 0
    out = tmp_path / "probe"
    args = ["probe", "--embeddings", emb, "--train-split", "train", "--eval-split", "test", "--task", "modality",
            "--shots", "1,2", "--repeats", "2", "--output", out]  # fmt: skip
    first = cli(*args)
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in out.iterdir()) == ["learning_curve_modality.png", "results.json"]
    again = cli(*args)
    assert again.exit_code == 0, again.output
    (out / "notes.txt").write_text("mine")
    refused = cli(*args)
    assert refused.exit_code == 1 and "holds files probe did not write (notes.txt)" in refused.stderr
    assert (out / "notes.txt").read_text() == "mine"
