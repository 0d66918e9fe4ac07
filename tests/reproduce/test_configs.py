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
from medclip_cli.experiments.runner import check_finetune_keys, needs_network

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


def test_only_the_offline_experiment_runs_without_network():
    offline = {e.name for e in list_experiments() if not needs_network(e)}
    assert offline == {"offline-minilm-lit"}
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
