"""Bootstrap intervals of the findings metrics, checked against a direct resampling loop written
here with scikit-learn (one call per resample and finding), including the rule for resamples in
which a rare finding has a single class."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, confusion_matrix, f1_score, roc_auc_score

from medclip_cli.evaluation.findings_uncertainty import METRICS, findings_intervals, nested, paired_findings
from medclip_cli.evaluation.multilabel import multilabel_metrics
from medclip_cli.evaluation import uncertainty
from medclip_cli.evaluation.uncertainty import resample_indices

FINDINGS = ["common", "half", "rare", "tied"]
N, RESAMPLES, SEED = 50, 300, 11


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random((N, 4)) < [0.4, 0.5, 0.0, 0.3]).astype(float)
    y[[3, 17], 2] = 1  # "rare": two positives, so many resamples have none
    scores = np.clip(0.3 * y + rng.random((N, 4)) * 0.7, 0, 1)
    scores[:, 3] = np.round(scores[:, 3], 1)  # ties, which AUROC counts one half and AP groups
    mask = (rng.random((N, 4)) > 0.2).astype(float)  # U-Ignore / blank-ignore holes
    mask[[3, 17], 2] = 1
    return y, mask, scores


def _loop(y, mask, scores, thresholds, indices) -> dict[str, list[float]]:
    """The slow way: scikit-learn on each resample's rows, the rules of the module written out."""
    out = {f"{m}:{f}": [] for m in METRICS for f in FINDINGS}
    for idx in indices:
        for j, name in enumerate(FINDINGS):
            rows = idx[mask[idx, j] > 0]
            t, s = y[rows, j].astype(int), scores[rows, j]
            pred = (s >= thresholds[j]).astype(int)
            tn, fp, fn, tp = confusion_matrix(t, pred, labels=[0, 1]).ravel()
            pos, neg = t.sum() > 0, (t == 0).sum() > 0
            out[f"auroc:{name}"].append(roc_auc_score(t, s) if pos and neg else np.nan)
            out[f"auprc:{name}"].append(average_precision_score(t, s) if pos else np.nan)
            out[f"f1:{name}"].append(f1_score(t, pred, zero_division=0) if pos else np.nan)
            out[f"sensitivity:{name}"].append(tp / (tp + fn) if pos else np.nan)
            out[f"specificity:{name}"].append(tn / (tn + fp) if neg else np.nan)
    return out


@pytest.mark.parametrize("block_entries", [None, N * 7])  # one block; 7 resamples a block
def test_findings_replicates_and_intervals_match_a_scikit_learn_loop(monkeypatch, block_entries):
    if block_entries is not None:
        monkeypatch.setattr(uncertainty, "BLOCK_ENTRIES", block_entries)
    y, mask, scores = _data()
    thresholds = [0.5, 0.45, 0.6, 0.5]
    metrics = multilabel_metrics(y, mask, scores, FINDINGS, thresholds)
    found, replicates = findings_intervals(y, mask, scores, FINDINGS, thresholds, metrics, RESAMPLES, SEED)
    slow = _loop(y, mask, scores, thresholds, resample_indices(N, RESAMPLES, SEED))
    for name, values in slow.items():
        np.testing.assert_allclose(replicates[name], values, atol=1e-12, equal_nan=True, err_msg=name)
        interval = found[name]
        defined = np.array(values)[~np.isnan(values)]
        assert interval.undefined == RESAMPLES - defined.size
        assert interval.resamples == RESAMPLES
        assert (interval.low, interval.high) == pytest.approx(tuple(np.percentile(defined, [2.5, 97.5])))
    entry = {e["finding"]: e for e in metrics["per_finding"]}
    assert found["auroc:rare"].point == entry["rare"]["auroc"]
    # The rule for a rare finding: resamples without both classes are skipped and counted.
    assert 0 < found["auroc:rare"].undefined < RESAMPLES
    assert found["auroc:common"].undefined == 0
    # Macro: the mean over the findings of the point's macro; a resample where one of them is
    # undefined is skipped for the macro.
    for m in METRICS:
        stacked = np.array([slow[f"{m}:{f}"] for f in FINDINGS if entry[f][m] is not None])
        expected = stacked.mean(axis=0)  # NaN wherever one finding is NaN
        np.testing.assert_allclose(replicates[f"macro_{m}"], expected, atol=1e-12, equal_nan=True)
        assert found[f"macro_{m}"].point == pytest.approx(metrics[f"macro_{m}"])
        assert found[f"macro_{m}"].undefined == int(np.isnan(expected).sum())
    assert found["macro_auroc"].undefined == found["auroc:rare"].undefined  # "rare" alone loses resamples
    as_json = nested(found)
    assert as_json["per_finding"]["rare"]["auroc"]["undefined_resamples"] == found["auroc:rare"].undefined
    assert as_json["macro"]["auroc"]["low"] <= metrics["macro_auroc"] <= as_json["macro"]["auroc"]["high"]


def test_same_seed_same_interval_and_paired_differences_use_the_same_images():
    y, mask, scores = _data()
    thresholds = [0.5] * 4
    metrics = multilabel_metrics(y, mask, scores, FINDINGS, thresholds)
    a, reps_a = findings_intervals(y, mask, scores, FINDINGS, thresholds, metrics, 200, 3)
    again, _ = findings_intervals(y, mask, scores, FINDINGS, thresholds, metrics, 200, 3)
    other, _ = findings_intervals(y, mask, scores, FINDINGS, thresholds, metrics, 200, 4)
    assert a == again and a != other

    better = np.clip(scores + 0.4 * (y - 0.5), 0, 1)
    metrics_b = multilabel_metrics(y, mask, better, FINDINGS, thresholds)
    _, reps_b = findings_intervals(y, mask, better, FINDINGS, thresholds, metrics_b, 200, 3)

    class R:  # the two attributes paired_findings reads from a FindingsResult
        def __init__(self, metrics, replicates):
            self.metrics, self.replicates = metrics, replicates

    diff = paired_findings(R(metrics, reps_a), R(metrics_b, reps_b))
    d = diff["macro_auroc"]
    assert d.point == pytest.approx(metrics_b["macro_auroc"] - metrics["macro_auroc"])
    assert d.low > 0  # better scores on the same images: the paired interval excludes zero
    np.testing.assert_allclose(
        np.nanpercentile(reps_b["auroc:common"] - reps_a["auroc:common"], [2.5, 97.5]),
        [diff["auroc:common"].low, diff["auroc:common"].high],
    )


def test_evaluate_findings_reports_intervals_and_paired_differences(tmp_path, cli):
    """``evaluate --finding-columns`` on the CheXpert-shaped MedPix manifest: every per-finding and
    macro interval in results_findings.json equals the loop over predictions_findings.csv."""
    import csv
    import json

    from tests.evaluation.test_multilabel import FINDINGS as MEDPIX_FINDINGS, _medpix_findings_manifest

    manifest = _medpix_findings_manifest(tmp_path / "data")
    out = tmp_path / "out"
    result = cli("evaluate", "--data", manifest, "--split", "test", "--finding-columns", ",".join(MEDPIX_FINDINGS),
                 "--encoder", "test-vit", "--encoder", "test-resnet", "--pretrained", "none", "--device", "cpu",
                 "--threshold-split", "dev", "--bootstrap", "200", "--seed", "5", "--output", out)
    assert result.exit_code == 0, result.output
    assert "paired" in result.output and " [0." in result.output  # intervals in the tables
    report = json.loads((out / "results_findings.json").read_text())
    with open(out / "predictions_findings.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["model"] == report["models"][0]["label"]]
    first = report["models"][0]
    indices = resample_indices(len(rows), 200, 5)
    aurocs = []
    for name in MEDPIX_FINDINGS:
        truth = np.array([int(r[f"true_{name}"]) if r[f"true_{name}"] != "" else -1 for r in rows])
        probs = np.array([float(r[f"prob_{name}"]) for r in rows])
        values = []
        for idx in indices:
            t, s = truth[idx], probs[idx]
            t, s = t[t >= 0], s[t >= 0]
            values.append(roc_auc_score(t, s) if 0 < t.sum() < t.size else np.nan)
        aurocs.append(values)
        got = first["intervals"]["per_finding"][name].get("auroc")
        if got is None:  # a single class in the evaluated split: no point, so no interval
            assert next(e for e in first["metrics"]["per_finding"] if e["finding"] == name)["auroc"] is None
            continue
        defined = np.array(values)[~np.isnan(values)]
        assert [got["low"], got["high"]] == pytest.approx(list(np.percentile(defined, [2.5, 97.5])), abs=1e-9)
        assert got["resamples"] == 200 and got.get("undefined_resamples", 0) == 200 - defined.size
    macro = first["intervals"]["macro"]["auroc"]
    entered = [v for v, e in zip(aurocs, first["metrics"]["per_finding"]) if e["auroc"] is not None]
    per_resample = np.mean(np.array(entered), axis=0)
    assert [macro["low"], macro["high"]] == pytest.approx(
        list(np.percentile(per_resample[~np.isnan(per_resample)], [2.5, 97.5])), abs=1e-9
    )
    comparison = report["comparisons"][0]
    assert comparison["same_images"] and "macro_auroc" in comparison["differences"]
    second = report["models"][1]["metrics"]["macro_auroc"]
    assert comparison["differences"]["macro_auroc"]["point"] == pytest.approx(second - first["metrics"]["macro_auroc"])
