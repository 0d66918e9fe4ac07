"""``finetune --finding-columns``: every epoch validates the CheXpert-shaped findings of the dev
split with prompt pairs, logs findings_macro_auroc (and each finding's AUROC) to metrics.jsonl, and
``--select-metric findings_macro_auroc`` picks best/ on it; the logged number is what ``evaluate``
reports for the saved best/ model on the same split."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from tests.conftest import MEDPIX_ROOT

FINDINGS = ("CT", "MR", "head", "chest")


def _manifest(target: Path, bad_value: bool = False) -> Path:
    """Caption + finding columns over MedPix 2.0 images: train (16) and dev (16), CT/MR from the
    record's modality, head/chest from its location category, some -1 and blank as CheXpert has."""
    source = MEDPIX_ROOT / "MedPix-2-0"
    if not (source / "splitted_dataset").is_dir():
        pytest.skip(f"MedPix 2.0 copy not found at {MEDPIX_ROOT}")
    target.mkdir(parents=True, exist_ok=True)
    os.symlink(source / "images", target / "scans")
    rows, n = [], 0
    for split in ("train", "dev"):
        records = [json.loads(x) for x in (source / "splitted_dataset" / f"descriptions_{split}.jsonl").read_text().splitlines()]
        for kind in ("CT", "MR"):
            for r in [r for r in records if r["Type"] == kind][:8]:
                n += 1
                region = (r.get("Location Category") or "").lower()
                rows.append({
                    "image": f"scans/{r['image']}.png",
                    "caption": (r.get("Description") or {}).get("Caption") or "a scan",
                    "split": split,
                    "CT": "-1" if n % 7 == 0 else str(int(kind == "CT")),
                    "MR": str(int(kind == "MR")),
                    "head": str(int("head" in region)),
                    "chest": "" if n % 5 == 0 else str(int("thorax" in region or "chest" in region)),
                })
    if bad_value:
        rows[-1]["head"] = "maybe"
    path = target / "cxr.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _args(manifest: Path, out: Path) -> list:
    return ["finetune", "--encoder", "test-vit", "--pretrained", "none", "--data", manifest, "--output", out,
            "--finding-columns", ",".join(FINDINGS), "--batch-size", "8", "--epochs", "3", "--lr", "2e-3",
            "--warmup", "0", "--device", "cpu"]


def test_finetune_selects_best_on_findings_macro_auroc(tmp_path, cli):
    manifest = _manifest(tmp_path / "data")
    out = tmp_path / "run"
    result = cli(*_args(manifest, out), "--select-metric", "findings_macro_auroc", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["best_metric"] == "findings_macro_auroc"
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r.get("type") == "epoch"]
    assert len(epochs) == 3
    values = [r["findings_macro_auroc"] for r in epochs]
    assert all(0.0 <= v <= 1.0 for v in values) and len(set(values)) > 1  # training moved it
    assert {f"findings_auroc:{f}" for f in ("head", "chest")} <= set(epochs[0])
    best = max(range(3), key=lambda i: (values[i], -i))  # the first epoch with the highest value
    assert summary["best_epoch"] == best + 1 and summary["best_value"] == pytest.approx(values[best])
    assert [r["best"] for r in epochs] == [values[i] > max(values[:i], default=-1) for i in range(3)]
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["val_findings"] == "findings" and config["dataset_options"]["finding_columns"] == ",".join(FINDINGS)

    # Independent: evaluate's findings metrics of the saved best/ model on the dev split.
    check = cli("evaluate", "--model", out / "best", "--data", manifest, "--split", "dev",
                "--finding-columns", ",".join(FINDINGS), "--device", "cpu", "--bootstrap", "0", "--json")
    assert check.exit_code == 0, check.output
    metrics = json.loads(check.stdout)["models"][0]["metrics"]
    assert metrics["macro_auroc"] == pytest.approx(values[best], abs=1e-6)
    for entry in metrics["per_finding"]:
        logged = epochs[best][f"findings_auroc:{entry['finding']}"]
        assert (entry["auroc"] is None and logged != logged) or entry["auroc"] == pytest.approx(logged, abs=1e-6)


def test_select_metric_on_findings_needs_finding_columns(tmp_path, cli):
    manifest = _manifest(tmp_path / "data")
    result = cli("finetune", "--encoder", "test-vit", "--pretrained", "none", "--data", manifest, "--output", tmp_path / "run",
                 "--select-metric", "findings_macro_auroc", "--device", "cpu")
    assert result.exit_code == 2
    assert "--select-metric 'findings_macro_auroc' is not computed" in result.output
    assert "--finding-columns" in result.output


def test_a_bad_finding_value_fails_before_training(tmp_path, cli):
    manifest = _manifest(tmp_path / "data", bad_value=True)
    out = tmp_path / "run"
    result = cli(*_args(manifest, out))
    assert result.exit_code == 1
    assert "finding 'head': value 'maybe' is not 1, 0, -1 or blank" in result.output
    assert not (out / "last").exists()
