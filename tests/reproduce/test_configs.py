"""Experiment files: every one parses and validates; --set overrides; --list; aliases."""

from __future__ import annotations

import json

import pytest

from medclip_cli.encoders import get_encoder
from medclip_cli.experiments.config import (
    ExperimentConfigError,
    aliases,
    experiments_dir,
    list_experiments,
    load_experiment,
    parse_value,
    resolve_names,
)
from medclip_cli.experiments.network import needs_network
from medclip_cli.experiments.runner import check_finetune_keys
from tests.conftest import write_medpix_manifest

STUDY = {
    "zeroshot-vit-b-32",
    "zeroshot-rn50",
    "zeroshot-rn50x4",
    "offline-minilm-lit",
    "encoder-timm-resnet50-clip-text",
    "encoder-vit-b-32-pubmedbert",
} | {f"finetune-{e}-lambda-{l}" for e in ("vit-b-32", "rn50") for l in ("0.3", "0.5", "0.7")}


def test_the_study_experiments_exist():
    assert STUDY <= {e.name for e in list_experiments()}


@pytest.mark.parametrize("name", sorted(p.stem for p in experiments_dir().glob("*.toml") if p.stem != "aliases"))
def test_every_experiment_validates(name):
    experiment = load_experiment(name)
    get_encoder(experiment.settings["model"]["encoder"])
    if experiment.settings["model"]["text_encoder"]:
        get_encoder(experiment.settings["model"]["text_encoder"])
    check_finetune_keys(experiment)
    if experiment.finetune is not None:
        assert 0.0 <= experiment.finetune.get("loss_weight", 0.5) <= 1.0


def test_weighted_loss_experiments_use_their_lambda():
    for encoder in ("vit-b-32", "rn50"):
        for weight in (0.3, 0.5, 0.7):
            assert load_experiment(f"finetune-{encoder}-lambda-{weight}").finetune["loss_weight"] == weight


def test_best_is_an_alias_in_config_for_the_fine_tuned_vit():
    assert "best" in aliases()
    (name,) = resolve_names("best")
    experiment = load_experiment(name)
    assert experiment.settings["model"]["encoder"] == "vit-b-32" and experiment.finetune is not None


def test_only_the_offline_experiments_run_without_network():
    offline = {e.name for e in list_experiments() if not needs_network(e)}
    # side-by-side-offline is offline-minilm-lit plus a [probe] step; -captions is it without label text
    assert offline == {"offline-minilm-lit", "offline-minilm-lit-captions", "side-by-side-offline"}
    experiment = load_experiment("offline-minilm-lit")
    assert experiment.settings["model"]["text_encoder"] == "minilm-l6"
    assert experiment.finetune["lock_text"] is True


def test_set_overrides_are_parsed_and_recorded():
    experiment = load_experiment(
        "offline-minilm-lit", ["finetune.epochs=1", "data.eval_split=dev", 'evaluate.tasks=["modality"]', "finetune.augment=false"]
    )
    assert experiment.finetune["epochs"] == 1 and experiment.finetune["augment"] is False
    assert experiment.settings["data"]["eval_split"] == "dev"
    assert experiment.settings["evaluate"]["tasks"] == ["modality"]
    assert experiment.overrides[0] == "finetune.epochs=1"


@pytest.mark.parametrize(
    "override,message",
    [
        ("finetune.epochs", "expected SECTION.KEY=VALUE"),
        ("nosuch.key=1", "unknown section 'nosuch'"),
        ("model.nosuch=1", "unknown key model.nosuch"),
        ("finetune.loss_weight=1.5", "must be in [0, 1]"),
    ],
)
def test_bad_overrides_are_usage_errors(override, message):
    with pytest.raises(ExperimentConfigError) as info:
        load_experiment("offline-minilm-lit", [override])
    assert message in str(info.value)


def test_unknown_finetune_key_names_the_file():
    experiment = load_experiment("offline-minilm-lit", ["finetune.epochz=3"])
    with pytest.raises(ExperimentConfigError, match=r"offline-minilm-lit.toml: unknown key finetune.epochz"):
        check_finetune_keys(experiment)


def test_zero_shot_experiment_rejects_finetune_overrides():
    with pytest.raises(ExperimentConfigError, match="zero-shot baseline"):
        load_experiment("zeroshot-rn50", ["finetune.epochs=1"])


def test_unknown_experiment_gets_close_matches():
    with pytest.raises(ExperimentConfigError, match="did you mean"):
        resolve_names("zeroshot-vit-b32")


def test_parse_value():
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("dev") == "dev" and parse_value('["a", "b"]') == ["a", "b"]


def test_list_command_json(cli):
    result = cli("reproduce", "--list", "--json")
    assert result.exit_code == 0
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert STUDY <= set(rows)
    assert rows["offline-minilm-lit"]["needs network"] is False
    assert rows["zeroshot-vit-b-32"]["fine-tunes"] is False


def test_unknown_experiment_via_cli_exits_2(cli):
    result = cli("reproduce", "--experiment", "nope")
    assert result.exit_code == 2 and "unknown experiment 'nope'" in result.stderr


MANIFEST_EXPERIMENT = """
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
"""


@pytest.fixture
def own_configs(tmp_path, monkeypatch):
    """A configs/ folder with the shipped prompts and labels, for experiment files written by a test."""
    shipped = experiments_dir().parent
    configs = tmp_path / "configs"
    (configs / "experiments").mkdir(parents=True)
    for name in ("prompts", "labels"):
        (configs / name).symlink_to(shipped / name)
    monkeypatch.setenv("MEDCLIP_CONFIG_DIR", str(configs))
    return configs


def test_data_column_keys_parse_and_reach_every_split(cli, own_configs, tmp_path):
    (own_configs / "experiments" / "manifest.toml").write_text(MANIFEST_EXPERIMENT, encoding="utf-8")
    experiment = load_experiment("manifest")
    assert experiment.dataset_options == {
        "image_column": "scan_file", "caption_column": "findings", "label_columns": ["kind"], "split_column": "subset",
    }  # fmt: skip
    check_finetune_keys(experiment)

    manifest = write_medpix_manifest(tmp_path / "data", {"train": 4, "dev": 4})
    out = tmp_path / "runs"
    result = cli("reproduce", "--experiment", "manifest", "--data", manifest, "--output", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    results = json.loads((out / "manifest" / "results.json").read_text(encoding="utf-8"))
    assert results["training"]["steps"] == 2
    assert {row["task"] for row in results["comparison"]} == {"kind", "retrieval"}
    assert results["evaluation"]["dataset"]["n_samples"] == 8
    assert results["evaluation"]["dataset"]["options"] == experiment.dataset_options
    saved = json.loads((out / "manifest" / "finetune" / "config.json").read_text(encoding="utf-8"))
    assert saved["config"]["dataset_options"] == experiment.dataset_options


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "data.image_colum=path",
            "unknown key data.image_colum (known: path, dataset, train_split, val_split, eval_split, "
            "image_column, caption_column, label_columns, split_column, finding_columns, findings_convention)",
        ),
        ("data.label_columns=3", "data.label_columns must be a list of column names, not 3"),
        ("data.caption_column=[1]", "data.caption_column must be a column name"),
        ("data.finding_columns=3", "data.finding_columns must be a list of column names, not 3"),
        ("data.findings_convention=chexpret", "data.findings_convention must be chexpert or binary, not 'chexpret'"),
    ],
)
def test_bad_data_column_keys_are_usage_errors(override, message):
    with pytest.raises(ExperimentConfigError) as info:
        load_experiment("offline-minilm-lit", [override])
    assert message in str(info.value)
