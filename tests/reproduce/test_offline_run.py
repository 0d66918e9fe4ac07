"""The offline experiment end to end through ``medclip reproduce``, shortened with ``--set``."""

from __future__ import annotations

import json

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

    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "| task | metric | baseline | fine-tuned | difference |" in report
    assert "| modality | accuracy@1 |" in report and "| location_category | accuracy@1 |" in report
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
