"""The medical-CLIP experiments: one clear line offline, and the comparison run end to end on
tiny models in the published formats."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_medpix_manifest
from tests.models.conftest import BIOMEDCLIP_REPO, PUBMEDCLIP_REPO, SIGLIP_REPO

COLUMN_SETS = [
    "--set", "data.image_column=scan_file", "--set", "data.caption_column=findings",
    "--set", 'data.label_columns=["kind"]', "--set", "data.split_column=subset", "--set", "data.eval_split=dev",
    "--set", 'evaluate.tasks=["kind", "retrieval"]',
]  # fmt: skip


@pytest.mark.parametrize(
    "experiment, extra, fetch",
    [
        ("zeroshot-biomedclip", [], "biomedclip"),
        ("zeroshot-pubmedclip", [], "pubmedclip"),
        ("compare-medical-clips", ["--set", f"model.encoder=hf-hub:{BIOMEDCLIP_REPO}"], "biomedclip"),
    ],
)
def test_medical_experiments_offline_stop_at_once_naming_what_to_fetch(cli, offline_hub, tmp_path, experiment, extra, fetch):
    manifest = write_medpix_manifest(tmp_path / "data", {"train": 2, "dev": 2})
    result = cli(
        "reproduce", "--experiment", experiment, "--data", manifest, *COLUMN_SETS, *extra, "--output", tmp_path / "runs",
    )  # fmt: skip
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"medclip weights fetch {fetch}" in errors[0], result.output
    assert not (tmp_path / "runs" / experiment / "finetune").exists()  # stopped before any work


def test_compare_experiment_reports_every_model_beside_clip_and_its_fine_tuned_self(cli, offline_hub, tmp_path):
    manifest = write_medpix_manifest(tmp_path / "data", {"train": 4, "dev": 2})
    compare = json.dumps([PUBMEDCLIP_REPO, f"hf-hub:{SIGLIP_REPO}"])
    out = tmp_path / "runs"
    result = cli(
        "reproduce", "--experiment", "compare-medical-clips", "--data", manifest, *COLUMN_SETS,
        "--set", f"model.encoder=hf-hub:{BIOMEDCLIP_REPO}", "--set", f"model.compare={compare}",
        "--set", "finetune.epochs=1", "--set", "finetune.batch_size=4", "--set", "finetune.max_steps=2",
        "--set", 'finetune.val_tasks=["kind"]',
        "--output", out, "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads((out / "compare-medical-clips" / "results.json").read_text())
    labels = [m["label"] for m in results["evaluation"]["models"]]
    assert labels == ["baseline", "fine-tuned", PUBMEDCLIP_REPO, f"hf-hub:{SIGLIP_REPO}"]
    row = next(r for r in results["comparison"] if r["task"] == "kind" and r["metric"] == "accuracy@1")
    assert all(isinstance(row[label], float) for label in labels)
    report = (out / "compare-medical-clips" / "report.md").read_text()
    assert f"| {PUBMEDCLIP_REPO} |" in report.splitlines()[next(i for i, l in enumerate(report.splitlines()) if l.startswith("| task"))]
