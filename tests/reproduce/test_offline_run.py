"""The offline experiment end to end through ``medclip reproduce``, shortened with ``--set``."""

from __future__ import annotations

import json
import statistics

import pytest

from medclip_cli.experiments.runner import OFFLINE_EXPERIMENT


def test_offline_experiment_runs_end_to_end_on_medpix(cli, medpix_root, tmp_path):
    out = tmp_path / "runs"
    short = [
        "data.eval_split=dev",  # the shared copy has no test split
        "data.train_split=dev",  # 197 images to decode and embed instead of 1653: seconds, not minutes
        "finetune.max_steps=4",
        "finetune.batch_size=32",
        "model.image_size=48",
    ]
    args = ["reproduce", "--experiment", OFFLINE_EXPERIMENT, "--data", medpix_root, "--output", out]
    result = cli(*args, *[a for item in short for a in ("--set", item)])
    assert result.exit_code == 0, result.output

    run_dir = out / OFFLINE_EXPERIMENT
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    assert results["overrides"] == short
    assert results["training"]["steps"] == 4
    assert results["settings"]["data"]["train_split"] == "dev"
    assert results["settings"]["finetune"]["label_text_prob"] > 0  # the tuned recipe, not a bare LiT
    tasks = {row["task"] for row in results["comparison"]}
    assert tasks == {"modality", "location_category", "plane", "retrieval"}
    for row in results["comparison"]:
        assert isinstance(row["baseline"], float) and isinstance(row["fine-tuned"], float)
    accuracy = {r["task"]: r for r in results["comparison"] if r["metric"] == "accuracy@1"}
    assert all(0.0 <= r["fine-tuned"] <= 1.0 for r in accuracy.values())
    # Four steps from random init change the image tower: the fine-tuned column is its own model.
    assert any(r["difference"] != 0.0 for r in results["comparison"])

    # Every figure carries its bootstrap interval; the difference a paired one and McNemar's test.
    modality = accuracy["modality"]
    assert modality["supervision"] == "label-supervised" and results["supervision"]["retrieval"] == "captions"
    (seed,) = modality["per_seed"]
    for key in ("baseline", "fine-tuned", "difference"):
        interval = seed["intervals"][key]
        assert interval["resamples"] == 1000 and interval["low"] <= interval["point"] <= interval["high"]
    assert 0.0 <= seed["mcnemar"]["p_value"] <= 1.0
    assert results["tuned_on"] == "dev"

    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "| task | metric | the fine-tuned model saw | baseline | fine-tuned | difference |" in report
    assert "| modality | accuracy@1 | label-supervised |" in report and "| location_category | accuracy@1 |" in report
    assert "**label-supervised**: modality, location_category, plane" in report
    assert "trained and measured on the same split" in report  # the shortened run trains on dev
    assert "hyperparameters chosen on split `dev`" in report
    low = seed["intervals"]["fine-tuned"]["low"]
    assert f"[{low:.3f}, " in report
    assert "exact McNemar p = " in report and "significant at 0.05" in report
    assert "### plane" in report and "| Axial |" in report  # the per-class table
    assert (run_dir / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "--set finetune.max_steps=4" in report
    assert "kept the last epoch (no validation split)" in report
    # Each model's weights are named: the baseline's random image tower is said, the tuned one is a file.
    assert results["weights"]["baseline"] == "image random init; text tag pretrained"
    assert results["weights"]["fine-tuned"].startswith(f"bundle {run_dir / 'finetune'}")
    assert "- weights, baseline: image random init; text tag pretrained" in report
    assert "predictions mean nothing" in result.stderr  # the zero-shot baseline of a random tower
    pictures = sorted(p.name for p in (run_dir / "evaluation").glob("confusion_*.png"))
    for task in ("modality", "location_category", "plane"):
        assert any(name.startswith(f"confusion_{task}") for name in pictures), pictures
    assert all((run_dir / "evaluation" / p).stat().st_size > 1000 for p in pictures)


@pytest.mark.slow  # two fine-tunes and four evaluations
def test_offline_experiment_over_two_seeds_reports_mean_and_sd(cli, medpix_root, tmp_path):
    out = tmp_path / "runs"
    short = ["data.eval_split=dev", "data.train_split=dev", "finetune.max_steps=2", "finetune.batch_size=32", "model.image_size=48"]
    args = ["reproduce", "--experiment", OFFLINE_EXPERIMENT, "--data", medpix_root, "--output", out, "--seeds", "0,1", "--bootstrap", "200"]
    result = cli(*args, *[a for item in short for a in ("--set", item)])
    assert result.exit_code == 0, result.output
    run_dir = out / OFFLINE_EXPERIMENT
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    assert results["seeds"] == [0, 1] and [r["seed"] for r in results["per_seed"]] == [1]
    row = next(r for r in results["comparison"] if r["task"] == "plane" and r["metric"] == "accuracy@1")
    values = [s["fine-tuned"] for s in row["per_seed"]]
    assert row["fine-tuned"] == pytest.approx(statistics.fmean(values))
    assert row["sd"]["fine-tuned"] == pytest.approx(statistics.stdev(values))
    assert (run_dir / "seed-0" / "finetune" / "last").is_dir() and (run_dir / "seed-1" / "finetune" / "last").is_dir()
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert f"{row['fine-tuned']:.3f} ± {row['sd']['fine-tuned']:.3f}" in report
    assert "## Seeds" in report and "| plane | accuracy@1 | 1 |" in report
