"""``medclip evaluate`` with intervals, paired comparisons and calibration, every number checked
against a computation from the written predictions files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.stats import binomtest

MODALITIES = ["CT", "MR", "CT", "MR", "CT", "CT", "MR", "MR", "CT", "MR", "CT", "MR"]


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def two_splits(make_medpix):
    make_medpix([{"image": f"MPX{i}_t", "modality": m, "caption": f"scan {i % 5}"} for i, m in enumerate(MODALITIES)], split="test")
    return make_medpix([{"image": f"MPX{i}_c", "modality": m} for i, m in enumerate(reversed(MODALITIES))], split="train")


def test_two_models_get_intervals_a_paired_comparison_and_mcnemar(cli, two_splits, tmp_path):
    out = tmp_path / "out"
    result = cli(
        "evaluate", "--data", two_splits, "--task", "modality", "--task", "retrieval", "--encoder", "test-vit",
        "--encoder", "test-resnet", "--device", "cpu", "--bootstrap", "300", "--seed", "5", "--output", out,
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["bootstrap"] == {"resamples": 300, "seed": 5, "level": 0.95, "method": "percentile"}
    rows = _rows(out / "predictions_modality.csv")
    per_model = {label: [r for r in rows if r["model"] == label] for label in ("test-vit/none", "test-resnet/none")}
    correct = {label: np.array([r["true"] == r["predicted"] for r in rs]) for label, rs in per_model.items()}

    # Intervals: a plain loop over the documented resamples (numpy's generator seeded [seed, 0]).
    indices = np.random.default_rng([5, 0]).integers(0, len(MODALITIES), size=(300, len(MODALITIES)))
    for model in saved["models"]:
        task = model["tasks"]["modality"]
        hits = correct[model["label"]]
        accuracy = task["intervals"]["accuracy@1"]
        assert accuracy["point"] == task["metrics"]["accuracy@1"] == pytest.approx(hits.mean())
        loop = [hits[idx].mean() for idx in indices]
        assert (accuracy["low"], accuracy["high"]) == pytest.approx(tuple(np.percentile(loop, [2.5, 97.5])))
        assert accuracy["resamples"] == 300
        assert {"balanced_accuracy", "macro_f1", "macro_auroc"} <= set(task["intervals"])
        assert {"image_to_text_R@1", "text_to_image_median_rank"} <= set(model["tasks"]["retrieval"]["intervals"])

    comparison = next(c for c in saved["comparisons"] if c["task"] == "modality")
    assert (comparison["reference"], comparison["model"], comparison["same_images"]) == ("test-vit/none", "test-resnet/none", True)
    a, b = correct["test-vit/none"], correct["test-resnet/none"]
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    expected_p = 1.0 if only_a + only_b == 0 else binomtest(min(only_a, only_b), only_a + only_b).pvalue
    assert comparison["mcnemar"]["p_value"] == pytest.approx(expected_p)
    assert (comparison["mcnemar"]["only_a_correct"], comparison["mcnemar"]["only_b_correct"]) == (only_a, only_b)
    diff = comparison["differences"]["accuracy@1"]
    paired = [b[idx].mean() - a[idx].mean() for idx in indices]
    assert diff["point"] == pytest.approx(b.mean() - a.mean())
    assert (diff["low"], diff["high"]) == pytest.approx(tuple(np.percentile(paired, [2.5, 97.5])))

    flat = " ".join(result.stdout.split())
    assert "paired bootstrap" in flat and "significant at 0.05" in flat
    interval_cell = f"{saved['models'][0]['tasks']['modality']['intervals']['accuracy@1']['low']:.3f}"
    assert interval_cell in result.stdout


def test_calibrate_on_fits_a_temperature_and_reports_before_and_after(cli, two_splits, tmp_path):
    out = tmp_path / "out"
    args = ["evaluate", "--data", two_splits, "--task", "modality", "--encoder", "test-vit", "--device", "cpu"]
    result = cli(*args, "--calibrate-on", "train", "--output", out)
    assert result.exit_code == 0, result.output
    calibration = json.loads((out / "results.json").read_text())["models"][0]["tasks"]["modality"]["calibration"]
    assert calibration["fitted_on"] == "train" and calibration["n_fit_images"] == len(MODALITIES)
    # The evaluated split's NLL before and after, recomputed from the predictions file: its
    # scores are softmax(logits), so log(score) / T are the scaled logits up to a constant.
    rows = _rows(out / "predictions_modality.csv")
    logp = np.log([[float(r["score_CT"]), float(r["score_MR"])] for r in rows])
    y = np.array([["CT", "MR"].index(r["true"]) for r in rows])
    for key, t in (("before", 1.0), ("after", calibration["temperature"])):
        z = logp / t
        z = z - z.max(axis=1, keepdims=True)
        nll = -np.mean(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(axis=1)))
        assert calibration[key]["nll"] == pytest.approx(nll, abs=1e-5)
    assert (out / "reliability_modality.png").read_bytes()[:4] == b"\x89PNG"
    assert "calibration (T fitted on train" in result.stdout

    same = cli(*args, "--calibrate-on", "test")
    assert same.exit_code == 2 and "--calibrate-on test" in same.stderr


def test_bootstrap_zero_turns_intervals_off(cli, two_splits):
    result = cli("evaluate", "--data", two_splits, "--task", "modality", "--encoder", "test-vit", "--device", "cpu", "--bootstrap", "0", "--json")
    assert result.exit_code == 0, result.output
    saved = json.loads(result.stdout)
    assert saved["config"]["bootstrap"] is None and "intervals" not in saved["models"][0]["tasks"]["modality"]
