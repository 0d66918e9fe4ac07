"""``medclip finetune`` end to end on the real MedPix 2.0 train/dev splits, and its usage errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import write_medpix_manifest
from tests.training.conftest import read_jsonl


def test_finetune_end_to_end_on_medpix(cli, medpix_root, tmp_path):
    out = tmp_path / "runs" / "tiny"
    result = cli(
        "finetune", "--encoder", "test-vit", "--data", medpix_root, "--output", out, "--epochs", "2",
        "--batch-size", "32", "--max-steps", "16", "--val-task", "modality", "--val-task", "location_category",
        "--select-metric", "zeroshot_modality_acc", "--loss-weight", "0.7", "--device", "cpu", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 16 and summary["epochs"] == 1  # 1653 // 32 = 51 steps per epoch
    assert summary["best_metric"] == "zeroshot_modality_acc" and summary["best_epoch"] == 1
    record = summary["history"][0]
    for key in ("val_loss", "image_to_text_R@1", "text_to_image_R@10", "zeroshot_location_category_acc"):
        assert key in record
    assert 0.0 <= record["zeroshot_modality_acc"] <= 1.0
    lines = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in lines if r["type"] == "train"] == [10, 16]
    train_lines = [r for r in lines if r["type"] == "train"]
    assert all(r["samples_per_s"] > 0 and r["lr"] >= 0 and 0 <= r["data_wait_s"] for r in train_lines)
    # Waiting for data is part of a step's time, never more than all of it.
    assert all(r["data_wait_s"] * r["samples_per_s"] <= 1.01 * 32 for r in train_lines)
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["loss_weight"] == 0.7
    assert config["plan"]["total_steps"] == 16 and config["plan"]["warmup_steps"] == 2
    assert config["plan"]["train_pairs"] == 1653 and config["plan"]["val_pairs"] == 197

    from medclip_cli.models.bundle import load_bundle

    last = load_bundle(out / "last")
    assert last.manifest["provenance"]["source"] == "medclip finetune"
    assert last.manifest["provenance"]["step"] == 16
    assert (out / "best" / "model.safetensors").is_file()


def test_finetune_prints_the_resolved_plan(cli, small_medpix, tmp_path):
    result = cli(
        "finetune", "--encoder", "test-vit", "--data", small_medpix, "--output", tmp_path / "run",
        "--batch-size", "8", "--grad-accum", "2", "--max-steps", "2", "--val-split", "none", "--lock-text",
        "--soft-targets", "--soft-label", "modality", "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.output
    assert "total 2 steps" in out and "8 / 16" in out  # batch / effective batch
    assert "warmup 0 steps" in out and "then cosine" in out
    assert "validation pairs" in out and "off" in out
    assert "soft targets by modality" in out
    assert not (tmp_path / "run" / "best").exists() and (tmp_path / "run" / "last").is_dir()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--loss-weight", "1.5"], "--loss-weight must be between 0 and 1"),
        (["--loss-weight", "-0.1"], "--loss-weight"),
        (["--batch-size", "0"], "--batch-size must be a positive"),
        (["--grad-accum", "-1"], "--grad-accum"),
        (["--precision", "fp8"], "--precision must be one of"),
        (["--select-metric", "accuracy"], "--select-metric 'accuracy' is not computed"),
        (["--soft-label", "modality"], "--soft-label needs --soft-targets"),
        (["--val-split", "none", "--val-task", "modality"], "--val-task needs a validation split"),
    ],
)
def test_bad_options_are_usage_errors(cli, small_medpix, tmp_path, args, message):
    result = cli("finetune", "--encoder", "test-vit", "--data", small_medpix, "--output", tmp_path / "run", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "run").exists()


def test_batch_larger_than_the_split_is_a_usage_error(cli, small_medpix, tmp_path):
    result = cli(
        "finetune",
        "--encoder",
        "test-vit",
        "--data",
        small_medpix,
        "--output",
        tmp_path / "r",
        "--batch-size",
        "500",
        "--val-split",
        "none",
    )
    assert result.exit_code == 2
    assert "96 training pairs" in result.output


def test_help_does_not_import_torch():
    code = "import sys; from medclip_cli.cli import app; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def _medpix_with_a_corrupt_image(small_medpix, tmp_path):
    import shutil

    root = tmp_path / "medpix" / "MedPix-2-0"
    shutil.copytree(small_medpix / "MedPix-2-0" / "splitted_dataset", root / "splitted_dataset")
    (root / "images").mkdir()
    records = read_jsonl(root / "splitted_dataset" / "descriptions_train.jsonl")
    source = (small_medpix / "MedPix-2-0" / "images").resolve()
    for r in records:
        shutil.copyfile(source / f"{r['image']}.png", root / "images" / f"{r['image']}.png")
    broken = root / "images" / f"{records[3]['image']}.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root.parent, broken


def test_unreadable_images_are_skipped_or_stop_a_strict_run(cli, small_medpix, tmp_path):
    data, broken = _medpix_with_a_corrupt_image(small_medpix, tmp_path)
    common = [
        "finetune",
        "--encoder",
        "test-vit",
        "--data",
        data,
        "--val-split",
        "none",
        "--batch-size",
        "8",
        "--max-steps",
        "1",
    ]
    strict = cli(*common, "--output", tmp_path / "strict", "--strict")
    assert strict.exit_code == 1
    assert broken.name in strict.output and "--strict" in strict.output
    lenient = cli(*common, "--output", tmp_path / "lenient")
    assert lenient.exit_code == 0, lenient.output
    assert "95 (1 skipped)" in lenient.output and "skipped 1 unreadable image" in lenient.output


COLUMNS = {"image_column": "scan_file", "caption_column": "findings", "label_columns": ["kind"], "split_column": "subset"}
COLUMN_ARGS = [
    "--image-column", "scan_file", "--caption-column", "findings", "--label-column", "kind", "--split-column", "subset",
]  # fmt: skip


def test_finetune_reads_a_manifest_through_the_column_options_and_resumes_with_them(cli, tmp_path):
    manifest = write_medpix_manifest(tmp_path / "data", {"train": 4, "dev": 2})
    out = tmp_path / "run"
    result = cli(
        "finetune", "--encoder", "test-vit", "--data", manifest, "--output", out, *COLUMN_ARGS, "--val-task", "kind",
        "--batch-size", "4", "--max-steps", "2", "--device", "cpu", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 2 and "zeroshot_kind_acc" in summary["history"][0]
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["dataset_options"] == COLUMNS
    assert config["plan"]["train_pairs"] == 8 and config["plan"]["val_pairs"] == 4  # both splits by "subset"

    resumed = cli("finetune", "--output", out, "--resume", "--json")  # the run's own columns, unsaid
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["steps"] == 2
    assert json.loads((out / "config.json").read_text())["config"]["dataset_options"] == COLUMNS

    changed = cli("finetune", "--output", out, "--resume", "--caption-column", "region")
    assert changed.exit_code == 2
    assert f"--resume: --caption-column is 'region' but the run in {out} used 'findings'" in changed.output
