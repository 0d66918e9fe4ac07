"""CLIP's zero-shot on OpenI beside MedPix in one summary; offline it fails with one clear line."""

from __future__ import annotations

import json

from medclip_cli.experiments.config import load_experiment, resolve_names
from medclip_cli.experiments.network import needs_network
from tests.data.openi_copy import write_openi
from tests.evaluation.conftest import write_medpix

PAIR = "zeroshot-openi-medpix"


def test_the_alias_runs_the_medpix_and_openi_zero_shot_experiments_together():
    assert resolve_names(PAIR) == ["zeroshot-vit-b-32", "zeroshot-vit-b-32-openi"]
    experiment = load_experiment("zeroshot-vit-b-32-openi")
    assert experiment.settings["data"]["dataset"] == "openi" and experiment.finetune is None
    assert experiment.settings["evaluate"]["tasks"] == ["normal", "finding", "retrieval"]
    assert needs_network(experiment)  # CLIP's OpenAI weights


def _one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return " ".join(result.output[result.output.index("error:") :].split())


def test_offline_without_data_or_weights_is_one_line(cli, tmp_path, _isolated_home):
    result = cli("reproduce", "--experiment", "zeroshot-vit-b-32-openi", "--output", tmp_path / "runs")
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert "OpenI is not downloaded" in line and "medclip data download openi" in line

    write_openi(_isolated_home / "datasets" / "openi")  # data present, weights not cached (HF offline)
    result = cli("reproduce", "--experiment", "zeroshot-vit-b-32-openi", "--output", tmp_path / "runs")
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert "experiment 'zeroshot-vit-b-32-openi' needs" in line and "'openai'" in line


def test_one_data_path_serves_the_experiments_of_its_format(cli, tmp_path, _isolated_home):
    """--data goes to the experiments that read its format; the others read their downloaded
    copies, and without one (or without weights) they are listed as skipped, not failed."""
    write_openi(tmp_path / "openi")
    result = cli("reproduce", "--experiment", PAIR, "--data", tmp_path / "openi", "--output", tmp_path / "runs")
    assert result.exit_code == 1
    summary = (tmp_path / "runs" / "summary.md").read_text(encoding="utf-8")
    assert "| zeroshot-vit-b-32 | skipped |" in summary and "| zeroshot-vit-b-32-openi | skipped |" in summary
    assert "different data sets" not in " ".join(result.output.split())

    result = cli("reproduce", "--experiment", PAIR, "--data", tmp_path / "missing", "--output", tmp_path / "runs2")
    assert result.exit_code == 1 and "no such file or folder" in result.output


def test_openi_beside_medpix_in_one_summary(cli, tmp_path, _isolated_home):
    # The same two experiments with a tiny random encoder, so they run here without weights.
    write_openi(_isolated_home / "datasets" / "openi")
    records = [
        {"image": f"MPX{i}_x", "modality": m, "plane": p, "location_category": "Head", "caption": f"scan {i}"}
        for i, (m, p) in enumerate([("CT", "Axial"), ("MR", "Sagittal"), ("CT", "Coronal"), ("MR", "Axial")])
    ]
    write_medpix(_isolated_home / "datasets" / "medpix2", "train", records)
    out = tmp_path / "runs"
    sets = ["model.encoder=test-vit", "model.pretrained=none", "data.eval_split=train", "evaluate.batch_size=8"]
    result = cli("reproduce", "--experiment", PAIR, "--output", out, "--device", "cpu", *[a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    summary = (out / "summary.md").read_text(encoding="utf-8")
    header = next(line for line in summary.splitlines() if line.startswith("| experiment"))
    assert header.split(" | ")[1:3] == ["data", "modality (acc@1)"]
    assert "normal (acc@1)" in header and "finding (acc@1)" in header
    rows = {line.split(" | ")[0].strip("| "): line for line in summary.splitlines() if line.startswith("| zeroshot")}
    assert "openi train (16 images)" in rows["zeroshot-vit-b-32-openi"]
    assert "medpix2 train (4 images)" in rows["zeroshot-vit-b-32"]
    openi = json.loads((out / "zeroshot-vit-b-32-openi" / "results.json").read_text())
    assert {r["task"] for r in openi["comparison"]} == {"normal", "finding", "retrieval"}
