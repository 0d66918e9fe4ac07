"""Multi-label findings: CheXpert values and policies, prompt pairs, metrics against scikit-learn,
thresholds from a validation split, and ``evaluate --finding-columns`` on a CheXpert-shaped
manifest of MedPix images."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from medclip_cli.data import load_dataset
from medclip_cli.data.findings import label_matrix, read_value, resolve, uncertain_policy
from medclip_cli.errors import DataError, UsageError
from medclip_cli.evaluation.multilabel import choose_thresholds, multilabel_metrics, prompt_pairs
from tests.conftest import MEDPIX_ROOT

FINDINGS = ("CT", "MR", "head", "chest")


def test_chexpert_values_and_the_three_uncertainty_policies():
    assert [read_value(v) for v in ("1", "1.0", "0", "0.0", "-1", "-1.0", "", None)] == [1, 1, 0, 0, -1, -1, None, None]
    with pytest.raises(ValueError):
        read_value("-1", "binary")  # no uncertain value in the plain 0/1 convention
    with pytest.raises(ValueError):
        read_value("2")
    assert [uncertain_policy(p) for p in ("U-Ignore", "U-Ones", "U-Zeros", "as-positive")] == [
        "ignore", "positive", "negative", "positive",
    ]
    assert resolve(-1, "ignore") is None and resolve(-1, "positive") == 1 and resolve(-1, "negative") == 0
    assert resolve(None) == 0 and resolve(None, blank="ignore") is None
    with pytest.raises(UsageError, match="--uncertain"):
        uncertain_policy("maybe")


def _write_manifest(path: Path, rows: list[dict], columns=("image", "split", *FINDINGS)) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _synthetic(tmp_path: Path, values: list[dict]) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for i, v in enumerate(values):
        Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append({"image": f"{i}.png", "split": v.pop("split", "test"), **v})
    return _write_manifest(tmp_path / "m.csv", rows)


def test_manifest_finding_columns_become_one_multilabel_field(tmp_path):
    path = _synthetic(tmp_path, [
        {"CT": "1", "MR": "0", "head": "-1", "chest": ""},
        {"CT": "0", "MR": "1.0", "head": "", "chest": "-1.0"},
    ])
    ds = load_dataset(path, "test", finding_columns="CT,MR,head,chest")
    field = ds.multilabel_fields["findings"]
    assert field.findings == FINDINGS
    assert set(ds.label_fields) == set()  # the finding columns are not single-label tasks
    y, mask = label_matrix(ds, field, [0, 1], uncertain="ignore")
    assert y.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0]] and mask.tolist() == [[1, 1, 0, 1], [1, 1, 1, 0]]
    y, mask = label_matrix(ds, field, [0, 1], uncertain="U-Ones")
    assert y.tolist() == [[1, 0, 1, 0], [0, 1, 0, 1]] and mask.min() == 1
    y, mask = label_matrix(ds, field, [0, 1], uncertain="U-Zeros", blank="ignore")
    assert y.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0]] and mask.tolist() == [[1, 1, 1, 0], [1, 1, 0, 1]]


def test_bad_finding_value_and_column_name_the_file(tmp_path):
    path = _synthetic(tmp_path, [{"CT": "2", "MR": "0", "head": "", "chest": ""}])
    ds = load_dataset(path, "test", finding_columns=["CT", "MR"])
    with pytest.raises(DataError, match="finding 'CT': value '2'"):
        label_matrix(ds, ds.multilabel_fields["findings"], [0])
    with pytest.raises(DataError, match="no finding column 'Edema'"):
        load_dataset(path, "test", finding_columns="CT,Edema")


def test_prompt_pairs_default_to_chexzero_and_read_per_finding_wording():
    pairs = prompt_pairs(["pleural effusion"])
    assert pairs["pleural effusion"].positive == ("pleural effusion",)
    assert pairs["pleural effusion"].negative == ("no pleural effusion",)
    table = {"positive": ["a scan with {}"], "negative": ["a scan without {}"], "findings": {"CT": {"positive": ["a CT scan"]}}}
    pairs = prompt_pairs(["CT", "MR"], table)
    assert pairs["CT"].positive == ("a CT scan",) and pairs["CT"].negative == ("a scan without CT",)
    assert pairs["MR"].positive == ("a scan with MR",)
    with pytest.raises(UsageError, match="unknown key"):
        prompt_pairs(["CT"], {"postive": ["x"]})


def test_metrics_match_scikit_learn_computed_independently():
    rng = np.random.default_rng(7)
    n, k = 200, 4
    y = (rng.random((n, k)) < [0.3, 0.5, 0.1, 0.7]).astype(float)
    scores = np.clip(0.35 * y + rng.random((n, k)) * 0.7, 0, 1)
    mask = (rng.random((n, k)) > 0.15).astype(float)
    thresholds = [0.4, 0.5, None, 0.6]
    m = multilabel_metrics(y, mask, scores, ["a", "b", "c", "d"], thresholds)
    aurocs, auprcs = [], []
    for j, entry in enumerate(m["per_finding"]):
        keep = mask[:, j] == 1
        t, s = y[keep, j], scores[keep, j]
        assert entry["n_labelled"] == keep.sum() and entry["n_positive"] == t.sum()
        aurocs.append(roc_auc_score(t, s))
        auprcs.append(average_precision_score(t, s))
        assert entry["auroc"] == pytest.approx(aurocs[-1], abs=1e-12)
        assert entry["auprc"] == pytest.approx(auprcs[-1], abs=1e-12)
        cut = 0.5 if thresholds[j] is None else thresholds[j]
        pred = s >= cut
        tp, fn = np.sum(pred & (t == 1)), np.sum(~pred & (t == 1))
        tn, fp = np.sum(~pred & (t == 0)), np.sum(pred & (t == 0))
        assert entry["sensitivity"] == pytest.approx(tp / (tp + fn))
        assert entry["specificity"] == pytest.approx(tn / (tn + fp))
        assert entry["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert m["macro_auroc"] == pytest.approx(np.mean(aurocs))
    assert m["macro_auprc"] == pytest.approx(np.mean(auprcs))


def test_youden_threshold_is_chosen_on_the_labels_given():
    rng = np.random.default_rng(3)
    y = (rng.random((300, 2)) < 0.4).astype(float)
    scores = np.clip(0.3 * y + rng.random((300, 2)) * 0.8, 0, 1)
    mask = np.ones_like(y)
    chosen = choose_thresholds(y, mask, scores, "youden")
    for j in range(2):
        fpr, tpr, cuts = roc_curve(y[:, j], scores[:, j])
        assert chosen[j] == pytest.approx(cuts[np.argmax(tpr - fpr)])
    one_class = np.zeros_like(y)
    assert choose_thresholds(one_class, mask, scores) == [None, None]


# --- end to end, on real MedPix images ---------------------------------------------------------------


def _medpix_findings_manifest(target: Path) -> Path:
    """CheXpert-shaped manifest over MedPix 2.0 images: CT/MR/head/chest as 1/0/-1/blank columns.

    CT/MR come from the record's modality, head/chest from its location category; every 7th CT value
    is written as uncertain (-1) and every 5th chest value left blank, as CheXpert labellers do.
    """
    source = MEDPIX_ROOT / "MedPix-2-0"
    if not (source / "splitted_dataset").is_dir():
        pytest.skip(f"MedPix 2.0 copy not found at {MEDPIX_ROOT}")
    target.mkdir(parents=True, exist_ok=True)
    os.symlink(source / "images", target / "scans")
    rows, n = [], 0
    for split, file, start, count in (("dev", "dev", 0, 24), ("test", "dev", 24, 30)):
        lines = (source / "splitted_dataset" / f"descriptions_{file}.jsonl").read_text().splitlines()
        for line in lines[start : start + count]:
            r = json.loads(line)
            region = (r.get("Location Category") or "").lower()
            n += 1
            rows.append({
                "image": f"scans/{r['image']}.png",
                "split": split,
                "CT": "-1" if n % 7 == 0 else str(int(r["Type"] == "CT")),
                "MR": str(int(r["Type"] == "MR")),
                "head": str(int("head" in region)),
                "chest": "" if n % 5 == 0 else str(int("thorax" in region or "chest" in region)),
            })
    return _write_manifest(target / "findings.csv", rows)


def test_evaluate_findings_end_to_end_against_scikit_learn(tmp_path, cli):
    manifest = _medpix_findings_manifest(tmp_path / "data")
    out = tmp_path / "out"
    args = ["evaluate", "--data", manifest, "--split", "test", "--finding-columns", ",".join(FINDINGS),
            "--encoder", "test-vit", "--device", "cpu", "--output", out]
    result = cli(*args, "--threshold-split", "dev")
    assert result.exit_code == 0, result.output
    assert "macro" in result.output and "validation split 'dev'" in result.output
    report = json.loads((out / "results_findings.json").read_text())["models"][0]
    assert report["uncertain"] == "ignore" and report["thresholds_from"].startswith("validation split 'dev'")
    with open(out / "predictions_findings.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30
    aurocs = []
    for entry, name in zip(report["metrics"]["per_finding"], FINDINGS):
        labelled = [r for r in rows if r[f"true_{name}"] != ""]
        truth = [int(r[f"true_{name}"]) for r in labelled]
        probs = [float(r[f"prob_{name}"]) for r in labelled]
        assert entry["n_labelled"] == len(labelled)
        if 0 < sum(truth) < len(truth):
            aurocs.append(roc_auc_score(truth, probs))
            assert entry["auroc"] == pytest.approx(aurocs[-1], abs=1e-9)
    assert report["metrics"]["macro_auroc"] == pytest.approx(np.mean(aurocs), abs=1e-9)
    # U-Ignore leaves the -1 CT values out; U-Ones counts them as positives.
    ones = cli(*args[:-1], tmp_path / "ones", "--uncertain", "U-Ones", "--json")
    assert ones.exit_code == 0, ones.output
    ct_ignore = report["metrics"]["per_finding"][0]
    ct_ones = json.loads(ones.output)["models"][0]["metrics"]["per_finding"][0]
    assert ct_ones["n_labelled"] > ct_ignore["n_labelled"]
    assert json.loads(ones.output)["models"][0]["thresholds_from"].startswith("fixed 0.5")


def test_threshold_split_may_not_be_the_evaluated_split(tmp_path, cli):
    path = _synthetic(tmp_path, [{"CT": "1", "MR": "0", "head": "", "chest": ""}, {"CT": "0", "MR": "1", "head": "", "chest": ""}])
    from medclip_cli.cli import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["evaluate", "--data", str(path), "--split", "test", "--finding-columns", "CT,MR",
                                      "--threshold-split", "test", "--encoder", "test-vit", "--device", "cpu"])
    assert result.exit_code != 0
    assert "--threshold-split 'test' is the evaluated --split" in result.output
