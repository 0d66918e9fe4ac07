"""``medclip evaluate`` end to end: the real MedPix 2.0 dev split and generated data, tiny encoders."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from tests.conftest import run_medclip, write_medpix_manifest

MEDPIX_TASKS = ["modality", "location_category", "plane", "retrieval"]


def _task_args(tasks):
    return [a for t in tasks for a in ("--task", t)]


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_medpix_dev_end_to_end(cli, medpix_root, tmp_path):
    out = tmp_path / "out"
    args = ["evaluate", "--data", medpix_root, "--split", "dev", *_task_args(MEDPIX_TASKS), "--encoder", "test-vit", "--device", "cpu", "--output", out]
    first = cli(*args, "--json")
    assert first.exit_code == 0, first.output
    result = json.loads(first.stdout)
    saved = json.loads((out / "results.json").read_text())
    assert saved["models"][0]["tasks"] == result["models"][0]["tasks"]
    assert result["tasks"] == MEDPIX_TASKS and result["seed"] == 0
    assert result["dataset"]["split"] == "dev" and len(result["dataset"]["fingerprint"]) == 16
    assert {"torch", "open_clip_torch", "scikit-learn", "numpy", "medclip"} <= set(result["versions"])
    model = result["models"][0]
    assert model["manifest"]["image_encoder"] == "test-vit"
    assert model["image_embeddings"] == {"from_cache": False, "seconds": model["image_embeddings"]["seconds"], "n_images": 197, "skipped": []}

    tasks = model["tasks"]
    assert tasks["modality"]["classes"] == ["CT", "MR"]
    assert tasks["modality"]["prompts"]["CT"] == ["Medical image of computed tomography"]
    assert tasks["plane"]["n_images"] == 181 and tasks["plane"]["n_excluded"] == 16  # planes other than the 3 listed
    assert tasks["location_category"]["metrics"]["accuracy@5"] is None  # 5 classes: 1.0 by construction
    assert tasks["retrieval"]["metrics"]["n_captions"] == 131

    # Anyone can recompute the metrics from the predictions files.
    for task in ("modality", "location_category", "plane"):
        rows = _read_csv(out / f"predictions_{task}.csv")
        classes = tasks[task]["classes"]
        assert list(rows[0]) == ["id", "image", "true", "predicted", *[f"score_{c}" for c in classes]]
        assert len(rows) == tasks[task]["n_images"]
        for row in rows:
            scores = [float(row[f"score_{c}"]) for c in classes]
            assert row["predicted"] == classes[scores.index(max(scores))]
            assert sum(scores) == pytest.approx(1.0)
        metrics = tasks[task]["metrics"]
        assert metrics["accuracy@1"] == pytest.approx(sum(r["true"] == r["predicted"] for r in rows) / len(rows))
        recalls = [
            sum(r["predicted"] == c for r in rows if r["true"] == c) / sum(r["true"] == c for r in rows)
            for c in classes
            if any(r["true"] == c for r in rows)
        ]
        assert metrics["balanced_accuracy"] == pytest.approx(sum(recalls) / len(recalls))
        assert (out / f"confusion_{task}.png").read_bytes()[:4] == b"\x89PNG"
    ranks = [int(r["image_to_text_rank"]) for r in _read_csv(out / "predictions_retrieval.csv")]
    assert tasks["retrieval"]["metrics"]["image_to_text_R@5"] == pytest.approx(sum(r <= 5 for r in ranks) / len(ranks))

    # A second run with other prompts reads the image embeddings back and only embeds text.
    second = cli(*args, "--json", "--prompts", "radiology")
    assert second.exit_code == 0, second.output
    again = json.loads(second.stdout)["models"][0]
    assert again["image_embeddings"]["from_cache"] is True
    assert again["model_key"] == model["model_key"]
    assert again["tasks"]["retrieval"]["metrics"] == tasks["retrieval"]["metrics"]
    assert len(again["tasks"]["plane"]["prompts"]["Axial"]) > 1


def test_tables_for_one_model(cli, make_medpix):
    root = make_medpix(
        [{"image": f"MPX{i}_x", "modality": m, "caption": f"scan {i}"} for i, m in enumerate(["CT", "MR", "CT", "MR"])]
    )
    result = cli("evaluate", "--data", root, "--task", "modality", "--task", "retrieval", "--encoder", "test-vit", "--device", "cpu")
    assert result.exit_code == 0, result.output
    for text in ("modality (test-vit/none)", "balanced_accuracy", "computed tomography", "pred MR", "retrieval", "text_to_image_R@1"):
        assert text in result.stdout


def test_several_models_share_one_comparison_table(cli, make_medpix, tmp_path):
    root = make_medpix(
        [{"image": f"MPX{i}_x", "plane": p} for i, p in enumerate(["Axial", "Coronal", "Sagittal", "Axial", "Coronal"])]
    )
    out = tmp_path / "cmp"
    result = cli(
        "evaluate", "--data", root, "--task", "plane", "--encoder", "test-vit", "--encoder", "test-resnet",
        "--device", "cpu", "--output", out,
    )
    assert result.exit_code == 0, result.output
    assert "plane (2 models)" in result.stdout
    header = next(line for line in result.stdout.splitlines() if "test-vit/none" in line)
    assert "test-resnet/none" in header
    rows = _read_csv(out / "predictions_plane.csv")
    assert [r["model"] for r in rows] == ["test-vit/none"] * 5 + ["test-resnet/none"] * 5
    assert (out / "confusion_plane_test-vit-none.png").is_file() and (out / "confusion_plane_test-resnet-none.png").is_file()


def test_unknown_task_is_a_usage_error_listing_the_label_fields(cli, make_medpix):
    root = make_medpix([{"image": "MPX1_a", "modality": "CT"}, {"image": "MPX2_b", "modality": "MR"}])
    result = cli("evaluate", "--data", root, "--task", "modalty", "--encoder", "test-vit")
    assert result.exit_code == 2
    assert "'modalty'" in result.stderr and "modality" in result.stderr and "location_category" in result.stderr
    assert "retrieval" in result.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--encoder", "test-vit", "--encoder", "test-resnet", "--pretrained", "none", "--pretrained", "none", "--pretrained", "none"], "3 --pretrained values for 2"),
        (["--encoder", "test-vit", "--prompts", "nosuchset"], "--prompts 'nosuchset'"),
    ],
)
def test_option_mistakes_exit_2_with_one_line(cli, make_medpix, extra, message):
    root = make_medpix([{"image": "MPX1_a", "modality": "CT"}, {"image": "MPX2_b", "modality": "MR"}])
    result = cli("evaluate", "--data", root, "--task", "modality", *extra)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_split_without_any_caption_cannot_run_retrieval(cli, make_medpix):
    root = make_medpix([{"image": "MPX1_a", "modality": "CT"}, {"image": "MPX2_b", "modality": "MR"}])
    result = cli("evaluate", "--data", root, "--task", "retrieval", "--encoder", "test-vit", "--device", "cpu")
    assert result.exit_code == 1
    assert "no image of split 'test' has a caption" in result.stderr


def test_help_does_not_import_torch():
    proc = run_medclip("evaluate", "--help")
    assert proc.returncode == 0 and "--prompts" in proc.stdout
    code = "import sys, medclip_cli.cli, medclip_cli.commands.evaluate; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_unreadable_images_are_skipped_and_reported(cli, make_medpix, tmp_path):
    root = make_medpix([{"image": f"MPX{i}_x", "modality": m} for i, m in enumerate(["CT", "MR", "CT", "MR"])])
    (root / "MedPix-2-0" / "images" / "MPX2_x.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    result = cli("evaluate", "--data", root, "--task", "modality", "--encoder", "test-vit", "--device", "cpu", "--output", out)
    assert result.exit_code == 0, result.output
    assert "skipped image MPX2_x" in result.stderr
    saved = json.loads((out / "results.json").read_text())["models"][0]
    assert saved["image_embeddings"]["n_images"] == 3 and saved["image_embeddings"]["skipped"][0]["id"] == "MPX2_x"
    assert saved["tasks"]["modality"]["n_images"] == 3
    assert [r["id"] for r in _read_csv(out / "predictions_modality.csv")] == ["MPX0_x", "MPX1_x", "MPX3_x"]


def test_without_task_every_label_field_with_labels_and_retrieval_run(cli, make_medpix):
    root = make_medpix(
        [{"image": f"MPX{i}_x", "modality": m, "caption": f"c{i}"} for i, m in enumerate(["CT", "MR", "CT"])]
    )
    result = cli("evaluate", "--data", root, "--encoder", "test-vit", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tasks"] == ["modality", "retrieval"]  # no plane, location or sex labels here


def _embedding_info(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["models"][0]


def test_cache_is_keyed_by_weights_and_data_not_by_name(cli, make_medpix, tmp_path):
    import torch

    from medclip_cli.models import resolve_model
    from medclip_cli.models.bundle import save_bundle

    root = make_medpix([{"image": f"MPX{i}_x", "modality": m} for i, m in enumerate(["CT", "MR", "CT"])])
    common = ["evaluate", "--data", root, "--task", "modality", "--device", "cpu", "--json"]
    by_name = _embedding_info(cli(*common, "--encoder", "test-vit"))
    torch.manual_seed(0)  # the weights `--encoder test-vit` gets with the default --seed 0
    bundle = save_bundle(resolve_model(None, "test-vit", None, "none"), tmp_path / "bundle")
    from_bundle = _embedding_info(cli(*common, "--model", bundle))
    assert from_bundle["model_key"] == by_name["model_key"]
    assert from_bundle["image_embeddings"]["from_cache"] is True
    assert from_bundle["tasks"]["modality"]["metrics"] == by_name["tasks"]["modality"]["metrics"]

    other_seed = _embedding_info(cli(*common, "--encoder", "test-vit", "--seed", "1"))
    assert other_seed["model_key"] != by_name["model_key"] and other_seed["image_embeddings"]["from_cache"] is False

    image = root / "MedPix-2-0" / "images" / "MPX1_x.png"
    image.write_bytes((root / "MedPix-2-0" / "images" / "MPX0_x.png").read_bytes())  # the data changed
    changed = _embedding_info(cli(*common, "--encoder", "test-vit"))
    assert changed["image_embeddings"]["from_cache"] is False

    uncached = _embedding_info(cli(*common, "--encoder", "test-vit", "--no-cache"))
    assert uncached["image_embeddings"]["from_cache"] is False


def test_label_column_of_a_manifest_is_a_zero_shot_task(cli, tmp_path):
    manifest = write_medpix_manifest(tmp_path / "data", {"dev": 4})
    out = tmp_path / "out"
    columns = ["--image-column", "scan_file", "--caption-column", "findings", "--split-column", "subset"]
    args = ["evaluate", "--data", manifest, "--split", "dev", *columns, "--encoder", "test-vit", "--device", "cpu"]
    result = cli(*args, "--label-column", "kind", "--output", out, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["tasks"] == ["kind", "retrieval"]  # region is no label: only the named column is
    assert report["dataset"]["options"] == {
        "image_column": "scan_file", "caption_column": "findings", "label_columns": ["kind"], "split_column": "subset",
    }  # fmt: skip
    kind = report["models"][0]["tasks"]["kind"]
    assert kind["classes"] == ["CT", "MR"] and kind["n_images"] == 8
    assert 0.0 <= kind["metrics"]["accuracy@1"] <= 1.0
    assert [r["true"] for r in _read_csv(out / "predictions_kind.csv")] == ["CT"] * 4 + ["MR"] * 4
    assert report["models"][0]["tasks"]["retrieval"]["metrics"]["n_captions"] >= 1

    unnamed = cli(*args[:5], "--encoder", "test-vit", "--device", "cpu")  # no column options: nothing to guess
    assert unnamed.exit_code != 0 and "--image-column" in unnamed.stderr
