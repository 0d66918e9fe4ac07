"""``finetune`` stores a temperature fitted on its validation split; ``classify`` applies it."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from medclip_cli.models.bundle import CONFIG_NAME


def _nll(logp: np.ndarray, y: np.ndarray, t: float) -> float:
    z = logp / t
    z = z - z.max(axis=1, keepdims=True)
    return float(-np.mean(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(axis=1))))


@pytest.mark.slow  # fine-tunes, evaluates and classifies: minutes on a loaded 2-core CPU
def test_finetune_stores_a_temperature_that_classify_applies(cli, small_medpix, tmp_path):
    out = tmp_path / "run"
    result = cli(
        "finetune", "--encoder", "test-vit", "--data", small_medpix, "--output", out, "--batch-size", "16",
        "--max-steps", "2", "--val-task", "modality", "--device", "cpu", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    stored = json.loads((out / "last" / CONFIG_NAME).read_text())["medclip"]["temperature"]
    assert summary["temperature"]["last"] == stored
    assert stored["fitted_on"] == "dev" and stored["tasks"] == ["modality"] and stored["nll_after"] <= stored["nll_before"]

    # The stored T is the NLL minimum of the bundle's own dev scores (from evaluate's predictions).
    ev = tmp_path / "ev"
    evaluated = cli("evaluate", "--model", out / "last", "--data", small_medpix, "--split", "dev", "--task", "modality", "--bootstrap", "0", "--device", "cpu", "--output", ev)
    assert evaluated.exit_code == 0, evaluated.output
    with open(ev / "predictions_modality.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    classes = [k[len("score_"):] for k in rows[0] if k.startswith("score_")]
    logp = np.log([[float(r[f"score_{c}"]) for c in classes] for r in rows])
    y = np.array([classes.index(r["true"]) for r in rows])
    t = stored["value"]
    assert stored["n_images"] == len(rows)
    assert _nll(logp, y, t) == pytest.approx(stored["nll_after"], abs=1e-5)
    assert _nll(logp, y, 1.0) == pytest.approx(stored["nll_before"], abs=1e-5)
    assert _nll(logp, y, t) <= min(_nll(logp, y, t * 1.02), _nll(logp, y, t / 1.02)) + 1e-9

    # classify: the same image with and without the stored temperature.
    plain = tmp_path / "plain"
    shutil.copytree(out / "last", plain)
    config = json.loads((plain / CONFIG_NAME).read_text())
    del config["medclip"]["temperature"]
    (plain / CONFIG_NAME).write_text(json.dumps(config))
    image = next((small_medpix / "MedPix-2-0" / "images").glob("*.png"))
    labels = ["brain MRI", "chest CT", "abdominal X-ray"]
    args = ["classify", image, *[a for lab in labels for a in ("--label", lab)], "--device", "cpu", "--json"]
    raw = cli(*args, "--model", plain)
    scaled = cli(*args, "--model", out / "last")
    assert raw.exit_code == 0 and scaled.exit_code == 0, scaled.output
    assert "applying the bundle's temperature" in scaled.stderr and "temperature" not in raw.stderr
    p_raw = {p["label"]: p["probability"] for p in json.loads(raw.stdout)[0]["predictions"]}
    p_scaled = {p["label"]: p["probability"] for p in json.loads(scaled.stdout)[0]["predictions"]}
    z = np.log([p_raw[lab] for lab in labels]) / t
    expected = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    assert [p_scaled[lab] for lab in labels] == pytest.approx(expected.tolist(), abs=1e-5)
