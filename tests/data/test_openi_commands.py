"""``data check``, ``evaluate`` and ``finetune`` on an OpenI copy (tiny test encoders, CPU)."""

from __future__ import annotations

import json

import pytest

from .openi_copy import write_openi
from .test_openi import BOMB


@pytest.fixture
def openi_root(tmp_path):
    return write_openi(tmp_path / "openi")


def test_data_check_lists_bad_reports_and_fails(cli, openi_root):
    good = cli("data", "check", openi_root, "--encoder", "test-vit", "--json")
    assert good.exit_code == 0, good.output
    report = json.loads(good.stdout)
    assert report["format"] == "openi" and report["errors"] == 0
    train = report["splits"][0]
    assert train["split"] == "train" and train["samples"] == train["images_ok"] == 16
    assert train["classes"]["normal"] == {"normal": 6, "abnormal": 8} and train["unlabelled"]["normal"] == 2
    assert train["empty_captions"] == 0

    (openi_root / "ecgen-radiology" / "9.xml").write_text(BOMB)  # the dev report
    (openi_root / "NLMCXR_png" / "CXR7_IM-2263-2001.png").unlink()  # a test image
    result = cli("data", "check", openi_root, "--encoder", "test-vit")
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "dev: ecgen-radiology/9.xml: XML with an entity declaration ('lol'), refused" in text
    assert "test: ecgen-radiology/7.xml: names image CXR7_IM-2263-2001, but NLMCXR_png/CXR7_IM-2263-2001.png does not exist; skipped" in text
    assert "2 error(s) found" in text


def test_evaluate_normal_finding_and_retrieval(cli, openi_root, tmp_path):
    out = tmp_path / "eval"
    result = cli(
        "evaluate", "--data", openi_root, "--split", "train", "--task", "normal", "--task", "finding",
        "--task", "retrieval", "--encoder", "test-vit", "--device", "cpu", "--output", out, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dataset"]["format"] == "openi" and data["dataset"]["n_samples"] == 16
    tasks = data["models"][0]["tasks"]
    assert (tasks["normal"]["n_images"], tasks["normal"]["n_excluded"]) == (14, 2)  # "No Indexing": left out
    assert tasks["finding"]["classes"] == ["Cardiomegaly", "Lung", "Calcified Granuloma", "Pleural Effusion"]
    assert tasks["finding"]["n_images"] == 6  # CXR4 x2, CXR5, CXR10 x2, CXR12 in train
    assert tasks["finding"]["class_names"][1] == "an abnormal lung"
    # 9 train reports with images, each caption shared by the report's views: 9 captions, 16 images.
    assert tasks["retrieval"]["metrics"]["n_captions"] == 9


def test_finetune_one_epoch_on_the_train_split(cli, openi_root, tmp_path):
    result = cli(
        "finetune", "--encoder", "test-vit", "--data", openi_root, "--output", tmp_path / "run", "--epochs", "1",
        "--batch-size", "4", "--val-task", "normal", "--select-metric", "zeroshot_normal_acc", "--device", "cpu", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["plan"]["train_pairs"] == 16  # every train image has a caption (report 7 is in test)
    assert summary["epochs"] == 1 and "zeroshot_normal_acc" in summary["history"][0]
