"""Experiments with a ``[probe]`` step: zero-shot, few-shot probe and fine-tuned in one report."""

from __future__ import annotations

import json

import pytest

from medclip_cli.experiments.config import ExperimentConfigError, experiments_dir, load_experiment
from medclip_cli.experiments.probe_step import probe_settings
from tests.conftest import write_medpix_manifest

EXPERIMENT = """
[model]
encoder = "test-vit"

[data]
image_column = "scan_file"
caption_column = "findings"
label_columns = ["kind"]
split_column = "subset"
val_split = "none"
eval_split = "dev"

[finetune]
max_steps = 2
batch_size = 4

[evaluate]
tasks = ["kind", "retrieval"]
batch_size = 8

[probe]
shots = "1,2,4"
repeats = 2
"""


@pytest.fixture
def own_configs(tmp_path, monkeypatch):
    shipped = experiments_dir().parent
    configs = tmp_path / "configs"
    (configs / "experiments").mkdir(parents=True)
    for name in ("prompts", "labels"):
        (configs / name).symlink_to(shipped / name)
    monkeypatch.setenv("MEDCLIP_CONFIG_DIR", str(configs))
    (configs / "experiments" / "sbs.toml").write_text(EXPERIMENT, encoding="utf-8")
    return configs


@pytest.mark.parametrize("name", ["side-by-side-offline", "side-by-side-vit-b-32"])
def test_shipped_side_by_side_experiments_have_a_probe_step(name):
    settings = probe_settings(load_experiment(name))
    assert settings["tasks"] == ["modality", "location_category", "plane"]  # the evaluate tasks but retrieval
    assert settings["shots"] == "1,2,4,8,16,all" and settings["repeats"] == 5 and settings["train_split"] == "train"


def test_probe_keys_are_checked(own_configs):
    with pytest.raises(ExperimentConfigError, match="unknown key probe.shot "):
        probe_settings(load_experiment("sbs", ["probe.shot=3"]))


def test_probe_override_needs_a_probe_section():
    with pytest.raises(ExperimentConfigError, match="no \\[probe\\] section"):
        load_experiment("offline-minilm-lit", ["probe.shots=1"])


def test_report_puts_zero_shot_probe_and_fine_tuned_side_by_side(cli, own_configs, tmp_path):
    manifest = write_medpix_manifest(tmp_path / "data", {"train": 4, "dev": 4})
    out = tmp_path / "runs"
    result = cli("reproduce", "--experiment", "sbs", "--data", manifest, "--output", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    results = json.loads((out / "sbs" / "results.json").read_text(encoding="utf-8"))
    probe = results["probe"]
    assert probe["train_split"] == "train" and probe["eval_split"] == "dev"
    task = probe["tasks"]["kind"]
    assert [m["label"] for m in task["models"]] == ["baseline", "fine-tuned"]
    assert set(task["draws"]) == {"1", "2", "4"} and all(len(d) == 2 for d in task["draws"].values())
    for model in task["models"]:
        assert set(model["summary"]) == {"1", "2", "4"}
        # the zero-shot figure beside the probes is the evaluation's own, on the same images
        evaluated = next(m for m in results["evaluation"]["models"] if m["label"] == model["label"])
        assert model["zero_shot"]["accuracy@1"] == pytest.approx(evaluated["tasks"]["kind"]["metrics"]["accuracy@1"])
    report = (out / "sbs" / "report.md").read_text(encoding="utf-8")
    assert "## Zero-shot, few-shot linear probe and fine-tuned" in report
    assert "| baseline | zero-shot |" in report and "| fine-tuned | probe, 4 per class |" in report
