"""``classify DIR --recursive --output predictions.csv|.jsonl``: every image format, one row per image,
rows appended as they are done, and a rerun that skips what the output already holds."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medclip_cli.evaluation.folder_classify import iter_images
from tests.data.test_images import write_dicom

LABELS = ("CT scan", "MRI scan", "chest X-ray")
MODEL = ("--encoder", "test-vit", "--device", "cpu")


def _tree(root: Path) -> dict[str, str]:
    """A folder of every kind the reader takes; returns relative path -> what it is."""
    rng = np.random.default_rng(1)
    (root / "ct" / "series1").mkdir(parents=True)
    (root / "mr").mkdir()
    Image.fromarray(rng.integers(0, 256, (40, 48), dtype=np.uint8)).save(root / "ct" / "a.png")
    Image.fromarray(rng.integers(0, 60000, (36, 36)).astype(np.uint16)).save(root / "ct" / "series1" / "b16.png")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "mr" / "c.jpg")
    write_dicom(root / "ct" / "series1" / "d.dcm", rng.integers(0, 2000, (32, 32)))
    write_dicom(root / "ct" / "series1" / "IM0001", rng.integers(0, 2000, (32, 32)))  # no extension
    (root / "mr" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "mr" / "notes.txt").write_text("not an image")
    (root / "README").write_text("no extension and not DICOM")
    return {
        "ct/a.png": "png", "ct/series1/b16.png": "png16", "mr/c.jpg": "jpeg", "ct/series1/d.dcm": "dicom",
        "ct/series1/IM0001": "dicom", "mr/broken.png": "broken",
    }


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_walk_finds_images_by_extension_and_dicom_preamble(tmp_path):
    expected = _tree(tmp_path)
    found = {p.relative_to(tmp_path).as_posix() for p in iter_images([tmp_path], recursive=True)}
    assert found == set(expected)
    top_only = {p.relative_to(tmp_path).as_posix() for p in iter_images([tmp_path / "mr"], recursive=False)}
    assert top_only == {"mr/c.jpg", "mr/broken.png"}


def test_folder_to_csv_matches_single_image_classify_and_resumes(tmp_path, cli):
    images = tmp_path / "images"
    expected = _tree(images)
    out = tmp_path / "out" / "predictions.csv"
    args = ["classify", images, "--recursive", "--labels", ",".join(LABELS), *MODEL, "--batch-size", "2", "--output", out]
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n_classified"] == 6 and summary["n_errors"] == 1 and summary["n_already_done"] == 0
    rows = _csv_rows(out)
    assert list(rows[0]) == ["path", "top_label", *[f"prob:{label}" for label in LABELS], "error"]
    by_path = {Path(r["path"]).relative_to(images).as_posix(): r for r in rows}
    assert set(by_path) == set(expected)
    assert by_path["mr/broken.png"]["error"] and by_path["mr/broken.png"]["top_label"] == ""
    # A rerun writes nothing new.
    again = json.loads(cli(*args, "--json").stdout)
    assert again["n_classified"] == 0 and again["n_already_done"] == 6
    assert len(_csv_rows(out)) == 6
    # A run killed mid-write: two whole rows lost and a torn one; the rerun completes exactly those.
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:-2]) + lines[-2][:10])
    resumed = json.loads(cli(*args, "--json").stdout)
    assert resumed["n_classified"] == 2 and resumed["n_already_done"] == 4
    final = _csv_rows(out)
    assert sorted(r["path"] for r in final) == sorted(r["path"] for r in rows)
    # Other labels cannot be appended to this file.
    other = cli("classify", images, "--recursive", "--labels", "a,b", *MODEL, "--output", out)
    assert other.exit_code != 0 and "other labels" in other.output


def test_folder_rows_equal_single_image_classify(tmp_path):
    """One model, two paths through it: batched folder rows equal classify_images per file."""
    import torch

    from medclip_cli.evaluation.classify import classify_images
    from medclip_cli.evaluation.folder_classify import classify_folder
    from medclip_cli.models import resolve_model

    images = tmp_path / "images"
    expected = _tree(images)
    torch.manual_seed(0)
    model = resolve_model(None, "test-vit", None, "none")
    out = tmp_path / "p.csv"
    summary = classify_folder(model, [images], LABELS, ["a {}"], out, recursive=True, batch_size=4)
    assert summary.n_classified == len(expected)
    by_path = {r["path"]: r for r in _csv_rows(out)}
    files = [images / p for p in expected if p != "mr/broken.png"]
    for item in classify_images(model, files, LABELS, ["a {}"]):
        row = by_path[item.image]
        probs = {label: float(row[f"prob:{label}"]) for label in LABELS}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)
        assert row["top_label"] == max(probs, key=probs.get)
        for label, p in item.predictions:
            assert probs[label] == pytest.approx(p, abs=1e-5)


def test_folder_to_jsonl_and_folder_needs_output(tmp_path, cli):
    images = tmp_path / "images"
    expected = _tree(images)
    out = tmp_path / "p.jsonl"
    result = cli("classify", images, "-r", "--labels", ",".join(LABELS), *MODEL, "--output", out)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(expected)
    ok = [r for r in records if r["error"] is None]
    assert len(ok) == 5 and all(list(r["probabilities"]) == list(LABELS) for r in ok)
    refused = cli("classify", images, "--labels", "a,b", *MODEL)
    assert refused.exit_code != 0 and "--output" in refused.output
    bad_name = cli("classify", images, "--labels", "a,b", *MODEL, "--output", tmp_path / "p.txt")
    assert bad_name.exit_code != 0 and ".csv or .jsonl" in bad_name.output
