"""Figures over seeds: means and standard deviations against the statistics module, each seed's
intervals and paired tests carried through; the seeds options and their mistakes."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pytest

from medclip_cli.evaluation.comparison import add_intervals, paired_comparisons
from medclip_cli.evaluation.results import EvalResult, ModelResult, TaskResult
from medclip_cli.evaluation.metrics import classification_metrics
from medclip_cli.experiments.config import ExperimentConfigError, load_experiment
from medclip_cli.experiments.results import supervision
from medclip_cli.experiments.runner import BASELINE, FINETUNED, SeedRun, comparison_rows, seeds_of


def _model(label: str, y: np.ndarray, scores: np.ndarray) -> ModelResult:
    task = TaskResult(
        "modality", "classification", classification_metrics(y, scores, ["CT", "MR"]), len(y), 0, ["CT", "MR"], ["CT", "MR"],
        arrays={"ids": [str(i) for i in range(len(y))], "y_true": y, "scores": scores},
    )  # fmt: skip
    return ModelResult(label, {}, label, 100.0, False, 0.0, len(y), [], {"modality": task})


def _seed_run(seed: int) -> SeedRun:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 40)
    base = rng.dirichlet([1, 1], 40)
    tuned = np.where(rng.random((40, 1)) < 0.8, np.eye(2)[y] * 0.6 + 0.2, base)
    models = [_model(BASELINE, y, base), _model(FINETUNED, y, tuned)]
    add_intervals(models, 300, seed, (1,))
    dataset = {"format": "medpix2", "root": "/data", "split": "dev", "n_samples": 40, "fingerprint": "f"}
    config = {"bootstrap": {"resamples": 300, "seed": seed, "level": 0.95, "method": "percentile"}}
    evaluation = EvalResult(models, dataset, {"name": "radiology"}, config, {"numpy": "2"}, 0.0, paired_comparisons(models, 300, seed, (1,)))
    return SeedRun(seed, Path("."), evaluation, None)


def test_rows_give_the_mean_and_sd_over_seeds_and_each_seeds_intervals():
    experiment = load_experiment("offline-minilm-lit", ['evaluate.tasks=["modality"]'])
    runs = [_seed_run(s) for s in (0, 1, 2)]
    rows = comparison_rows(experiment, runs)
    row = next(r for r in rows if r["metric"] == "accuracy@1")
    per_seed = [{m.label: m.tasks["modality"].metrics["accuracy@1"] for m in r.evaluation.models} for r in runs]
    tuned = [p[FINETUNED] for p in per_seed]
    diffs = [p[FINETUNED] - p[BASELINE] for p in per_seed]
    assert row[FINETUNED] == pytest.approx(statistics.fmean(tuned))
    assert row["sd"][FINETUNED] == pytest.approx(statistics.stdev(tuned))
    assert row["difference"] == pytest.approx(statistics.fmean(diffs))
    assert row["sd"]["difference"] == pytest.approx(statistics.stdev(diffs))
    assert row["supervision"] == "label-supervised"
    for seed_row, run in zip(row["per_seed"], runs):
        tuned_task = run.evaluation.models[1].tasks["modality"]
        assert seed_row["intervals"][FINETUNED] == tuned_task.intervals["accuracy@1"].to_json()
        assert seed_row["intervals"]["difference"] == run.evaluation.comparisons[0]["differences"]["accuracy@1"]
        assert seed_row["mcnemar"] == run.evaluation.comparisons[0]["mcnemar"]


def test_one_seed_has_no_sd():
    experiment = load_experiment("offline-minilm-lit", ['evaluate.tasks=["modality"]'])
    (row, *_) = comparison_rows(experiment, [_seed_run(0)])
    assert row["sd"] is None and len(row["per_seed"]) == 1


def test_supervision_names_what_training_saw():
    assert supervision(load_experiment("offline-minilm-lit")) == {
        "modality": "label-supervised", "location_category": "label-supervised", "plane": "label-supervised", "retrieval": "captions",
    }  # fmt: skip
    captions_only = supervision(load_experiment("offline-minilm-lit-captions"))
    assert captions_only["modality"] == captions_only["plane"] == "zero-shot"
    partly = supervision(load_experiment("offline-minilm-lit", ['finetune.label_text_fields=["plane"]']))
    assert partly["plane"] == "label-supervised" and partly["modality"] == "zero-shot"
    assert set(supervision(load_experiment("zeroshot-vit-b-32")).values()) == {"zero-shot"}


def test_seeds_setting_and_its_mistakes():
    assert seeds_of(load_experiment("offline-minilm-lit")) == [0]
    assert seeds_of(load_experiment("offline-minilm-lit", ["experiment.seeds=[3, 1]"])) == [3, 1]
    for bad, message in (("[]", "non-empty list"), ('["a"]', "list of integers"), ("[1, 1]", "repeats a seed")):
        with pytest.raises(ExperimentConfigError, match=message):
            load_experiment("offline-minilm-lit", [f"experiment.seeds={bad}"])
    with pytest.raises(ExperimentConfigError, match="evaluate.bootstrap"):
        load_experiment("offline-minilm-lit", ["evaluate.bootstrap=-1"])


@pytest.mark.parametrize("value", ["0,x", "1,1", ","])
def test_bad_seeds_option_is_a_usage_error(cli, value):
    result = cli("reproduce", "--experiment", "offline", "--seeds", value)
    assert result.exit_code == 2 and "--seeds" in result.stderr


def test_reports_show_mean_and_sd_and_what_training_saw():
    from medclip_cli.experiments.report import experiment_report, summary_report
    from medclip_cli.experiments.runner import ExperimentRun

    experiment = load_experiment("offline-minilm-lit", ['evaluate.tasks=["modality"]'])
    run = ExperimentRun(experiment, Path("."), [_seed_run(0), _seed_run(1)], 1.0, Path("/data"))
    row = next(r for r in run.comparison() if r["metric"] == "accuracy@1")
    mean_sd = f"{row[FINETUNED]:.3f} ± {row['sd'][FINETUNED]:.3f}"
    report = experiment_report(run, "medclip reproduce", [])
    assert "| modality | accuracy@1 | label-supervised | " in report and mean_sd in report
    assert "hyperparameters chosen on split `dev`; results measured on split `dev` — the same split" in report
    seed1 = row["per_seed"][1]["intervals"][FINETUNED]
    assert "| modality | accuracy@1 | 1 | " in report and f"[{seed1['low']:.3f}, {seed1['high']:.3f}]" in report
    assert report.count("exact McNemar p = ") == 2  # one paired test per seed
    summary = summary_report([run], "medclip reproduce --experiment all")
    assert f"→ {mean_sd} (label-supervised)" in summary

    one = ExperimentRun(experiment, Path("."), [_seed_run(0)], 1.0, Path("/data"))
    single = experiment_report(one, "medclip reproduce", [])
    interval = one.comparison()[0]["per_seed"][0]["intervals"][BASELINE]
    assert "95 % percentile bootstrap intervals (300 resamples" in single
    assert f"{interval['point']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]" in single
