"""Calibration numbers against formulas written out here, and a temperature fit that finds a
temperature planted in simulated data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medclip_cli.evaluation.calibration import brier, calibrate_task, ece, fit_temperature, nll, save_reliability_png, softmax


def _ece_by_hand(probs, y, bins=15):
    """Guo et al. (2017): 15 bins (k/15, (k+1)/15], Σ (n_b/N)·|acc_b − conf_b|, written as a loop."""
    total = 0.0
    for k in range(bins):
        lo, hi = k / bins, (k + 1) / bins
        members = [i for i in range(len(y)) if lo < max(probs[i]) <= hi]
        if not members:
            continue
        acc = sum(int(np.argmax(probs[i]) == y[i]) for i in members) / len(members)
        conf = sum(max(probs[i]) for i in members) / len(members)
        total += len(members) / len(y) * abs(acc - conf)
    return total


def test_ece_brier_nll_match_formulas():
    probs = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.34, 0.33, 0.33], [0.1, 0.1, 0.8], [0.5, 0.45, 0.05]])
    y = [0, 1, 1, 2, 2, 0]
    assert ece(probs, y) == pytest.approx(_ece_by_hand(probs, y), abs=1e-12)
    # 0.9 -> right, 0.6 -> wrong, 0.7 -> right, 0.34 -> wrong, 0.8 -> right, 0.5 -> right
    by_bin = (1 / 6) * abs(1 - 0.9) + (1 / 6) * abs(0 - 0.6) + (1 / 6) * abs(1 - 0.7) + (1 / 6) * abs(0 - 0.34) + (1 / 6) * abs(1 - 0.8) + (1 / 6) * abs(1 - 0.5)
    assert ece(probs, y) == pytest.approx(by_bin, abs=1e-12)
    brier_by_hand = sum(sum((probs[i][c] - (c == y[i])) ** 2 for c in range(3)) for i in range(6)) / 6
    assert brier(probs, y) == pytest.approx(brier_by_hand, abs=1e-12)
    logits = np.log(probs)
    assert nll(logits, y) == pytest.approx(-sum(math.log(probs[i][y[i]]) for i in range(6)) / 6, abs=1e-12)


def test_ece_bins_are_closed_on_the_right():
    # 2/3 = 10/15 sits on an edge: it belongs to (9/15, 10/15], not with 0.7 in (10/15, 11/15].
    probs = np.array([[2 / 3, 1 / 3], [0.3, 0.7]])
    y = [0, 0]  # the first right, the second wrong
    separate = 0.5 * abs(1 - 2 / 3) + 0.5 * abs(0 - 0.7)
    assert ece(probs, y) == pytest.approx(separate, abs=1e-12)
    assert ece(probs, y) == pytest.approx(_ece_by_hand(probs, y), abs=1e-12)


@pytest.mark.parametrize("planted", [0.4, 1.0, 2.5])
def test_temperature_fit_recovers_a_planted_temperature(planted):
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(6000, 5))
    truth = softmax(logits, planted)
    y = np.array([rng.choice(5, p=p) for p in truth])
    fitted = fit_temperature(logits, y)
    assert fitted == pytest.approx(planted, rel=0.06)
    # The fit is the NLL minimum: nudging T either way does worse.
    assert nll(logits, y, fitted) <= min(nll(logits, y, fitted * 1.05), nll(logits, y, fitted / 1.05))


def test_calibrate_task_reports_before_and_after_without_changing_predictions(tmp_path):
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=4.0, size=(800, 4))
    y = np.array([rng.choice(4, p=p) for p in softmax(logits, 3.0)])  # overconfident by 3x
    result = calibrate_task(logits[:400], y[:400], logits[400:], y[400:], "dev")
    assert result["fitted_on"] == "dev" and result["n_fit_images"] == 400
    assert result["temperature"] == pytest.approx(3.0, rel=0.25)
    assert result["after"]["nll"] < result["before"]["nll"]
    assert result["after"]["ece"] < result["before"]["ece"]
    assert np.array_equal(softmax(logits, result["temperature"]).argmax(1), logits.argmax(1))
    png = save_reliability_png(logits[400:], y[400:], result["temperature"], tmp_path / "r.png", "t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
