"""``reproduce`` with a ``[findings]`` step: an experiment over a CheXpert-shaped manifest of MedPix
images fine-tunes with validation on findings_macro_auroc, then reports the per-finding table with
intervals for the starting and the fine-tuned model and their paired difference; the numbers are
those ``evaluate`` gives for the same models, split and settings."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from medclip_cli.experiments.config import ExperimentConfigError, experiments_dir, load_experiment
from medclip_cli.experiments.findings_step import findings_settings
from medclip_cli.experiments.runner import check_experiment
from tests.conftest import MEDPIX_ROOT

FINDINGS = ["CT", "MR", "head", "chest"]

EXPERIMENT = """
[experiment]
description = "test: findings from MedPix labels"

[model]
encoder = "test-vit"

[data]
label_columns = ["kind"]
finding_columns = ["CT", "MR", "head", "chest"]
val_split = "dev"
eval_split = "test"

[finetune]
epochs = 2
batch_size = 8
lr = 2e-3
val_findings = "findings"
select_metric = "findings_macro_auroc"

[evaluate]
tasks = ["kind"]
batch_size = 16
bootstrap = 200

[findings]
uncertain = "U-Ones"
threshold_split = "dev"
"""


def _manifest(target: Path) -> Path:
    """train / dev / test rows over MedPix 2.0 images (test from dev records not in dev): a kind
    label, a caption, and CT/MR/head/chest findings as 1/0/-1/blank."""
    source = MEDPIX_ROOT / "MedPix-2-0"
    if not (source / "splitted_dataset").is_dir():
        pytest.skip(f"MedPix 2.0 copy not found at {MEDPIX_ROOT}")
    target.mkdir(parents=True, exist_ok=True)
    os.symlink(source / "images", target / "scans")
    read = lambda f: [json.loads(x) for x in (source / "splitted_dataset" / f"descriptions_{f}.jsonl").read_text().splitlines()]  # noqa: E731
    records = {"train": read("train"), "dev": read("dev")}
    rows, n = [], 0
    for split, file, skip in (("train", "train", 0), ("dev", "dev", 0), ("test", "dev", 6)):
        for kind in ("CT", "MR"):
            for r in [r for r in records[file] if r["Type"] == kind][skip : skip + 6]:
                n += 1
                region = (r.get("Location Category") or "").lower()
                rows.append({
                    "image": f"scans/{r['image']}.png", "caption": (r.get("Description") or {}).get("Caption") or "a scan",
                    "kind": kind, "split": split,
                    "CT": "-1" if n % 7 == 0 else str(int(kind == "CT")), "MR": str(int(kind == "MR")),
                    "head": str(int("head" in region)), "chest": "" if n % 5 == 0 else str(int("thorax" in region)),
                })
    path = target / "findings.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def own_configs(tmp_path, monkeypatch):
    shipped = experiments_dir().parent
    configs = tmp_path / "configs"
    (configs / "experiments").mkdir(parents=True)
    for name in ("prompts", "labels"):
        (configs / name).symlink_to(shipped / name)
    monkeypatch.setenv("MEDCLIP_CONFIG_DIR", str(configs))
    (configs / "experiments" / "cxr.toml").write_text(EXPERIMENT, encoding="utf-8")
    return configs


def test_findings_settings_are_checked(own_configs, tmp_path):
    settings = findings_settings(load_experiment("cxr"))
    assert settings["uncertain"] == "positive" and settings["prompts"] == "seed" and settings["threshold_rule"] == "youden"
    with pytest.raises(ExperimentConfigError, match="unknown key findings.treshold_split"):
        findings_settings(load_experiment("cxr", ["findings.treshold_split=dev"]))
    with pytest.raises(ExperimentConfigError, match="findings.threshold_split 'test' is data.eval_split"):
        findings_settings(load_experiment("cxr", ["findings.threshold_split=test"]))
    with pytest.raises(ExperimentConfigError, match="findings.uncertain 'maybe'"):
        findings_settings(load_experiment("cxr", ["findings.uncertain=maybe"]))
    with pytest.raises(ExperimentConfigError, match="no \\[findings\\] section"):
        load_experiment("offline-minilm-lit", ["findings.uncertain=ignore"])
    manifest = _manifest(tmp_path / "data")
    with pytest.raises(ExperimentConfigError, match="findings.threshold_split"):
        check_experiment(load_experiment("cxr", ["findings.threshold_split=val"]), manifest)


def test_reproduce_reports_findings_start_vs_fine_tuned_with_intervals(own_configs, tmp_path, cli):
    manifest = _manifest(tmp_path / "data")
    out = tmp_path / "runs"
    result = cli("reproduce", "--experiment", "cxr", "--data", manifest, "--output", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    results = json.loads((out / "cxr" / "results.json").read_text())
    assert results["training"]["best_metric"] == "findings_macro_auroc"
    assert all("findings_macro_auroc" in r for r in results["training"]["history"])
    findings = results["findings"]
    assert findings["split"] == "test" and findings["bootstrap"] == 200
    baseline, tuned = findings["models"]
    assert (baseline["label"], tuned["label"]) == ("baseline", "fine-tuned")
    assert tuned["uncertain"] == "positive" and tuned["thresholds_from"] == "validation split 'dev' (youden)"
    for model in (baseline, tuned):
        assert model["intervals"]["macro"]["auroc"]["resamples"] == 200
        assert set(model["intervals"]["per_finding"]) <= set(FINDINGS)
    difference = findings["comparisons"][0]
    assert (difference["reference"], difference["model"], difference["same_images"]) == ("baseline", "fine-tuned", True)
    assert difference["differences"]["macro_auroc"]["point"] == pytest.approx(
        tuned["metrics"]["macro_auroc"] - baseline["metrics"]["macro_auroc"]
    )

    # The same numbers from `evaluate` on the fine-tuned model kept by the run (best/ by findings AUROC).
    check = cli("evaluate", "--model", out / "cxr" / "finetune" / "best", "--data", manifest, "--split", "test",
                "--finding-columns", ",".join(FINDINGS), "--uncertain", "U-Ones", "--threshold-split", "dev",
                "--bootstrap", "200", "--seed", "0", "--device", "cpu", "--json")
    assert check.exit_code == 0, check.output
    direct = json.loads(check.stdout)["models"][0]
    assert direct["metrics"]["macro_auroc"] == pytest.approx(tuned["metrics"]["macro_auroc"], abs=1e-6)
    assert direct["intervals"]["macro"]["auroc"]["low"] == pytest.approx(tuned["intervals"]["macro"]["auroc"]["low"], abs=1e-6)

    report = (out / "cxr" / "report.md").read_text()
    assert "## Multi-label findings" in report
    assert "| finding | labelled | positive | AUROC | AUPRC | F1 | sensitivity | specificity |" in report
    assert "**fine-tuned − baseline** (paired bootstrap, same images)" in report
    macro_row = next(line for line in report.splitlines() if line.startswith("| macro |"))
    assert macro_row.count("[") == 5  # every macro metric with its interval
