"""The user's own experiments, label names and prompt sets, listed with the built-in ones."""

from __future__ import annotations

import json

import pytest

from medclip_cli.config_folders import builtin_config_dir

SEED_EXPERIMENT = """
[experiment]
description = "my own zero-shot run"
tests = "the seed prompts on my test encoder"

[model]
encoder = "test-vit"

[evaluate]
tasks = ["modality"]
"""


@pytest.fixture
def user_dir(tmp_path):
    folder = tmp_path / "my-configs"
    for kind in ("experiments", "labels", "prompts"):
        (folder / kind).mkdir(parents=True)
    return folder


def test_builtin_configs_are_found_without_a_user_folder():
    from medclip_cli.evaluation.prompts import list_prompt_sets
    from medclip_cli.experiments.config import list_experiments

    assert (builtin_config_dir() / "labels" / "medpix2.toml").is_file()
    assert {"seed", "radiology"} <= set(list_prompt_sets())
    assert "zeroshot-vit-b-32" in [e.name for e in list_experiments()]


def test_user_experiments_are_listed_with_builtin_ones(cli, user_dir):
    (user_dir / "experiments" / "my-run.toml").write_text(SEED_EXPERIMENT, encoding="utf-8")
    (user_dir / "experiments" / "aliases.toml").write_text('mine = "my-run"\n', encoding="utf-8")
    result = cli("--config-dir", user_dir, "reproduce", "--list", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["my-run"]["from"] == "user" and rows["my-run"]["encoders"] == "test-vit"
    assert rows["zeroshot-vit-b-32"]["from"] == "built-in"

    from medclip_cli.experiments.config import aliases, resolve_names

    assert resolve_names("mine") == ["my-run"]
    assert aliases()["best"]  # the built-in aliases are still there


def test_users_file_wins_on_a_name_clash(cli, user_dir, monkeypatch):
    monkeypatch.setenv("MEDCLIP_CONFIG_DIR", str(user_dir))
    (user_dir / "experiments" / "zeroshot-vit-b-32.toml").write_text(SEED_EXPERIMENT, encoding="utf-8")
    (user_dir / "prompts" / "seed.toml").write_text('templates = ["my own {}"]\n', encoding="utf-8")
    (user_dir / "prompts" / "mine.toml").write_text('templates = ["a scan: {}"]\n', encoding="utf-8")
    from medclip_cli.evaluation.prompts import list_prompt_sets, load_prompt_set
    from medclip_cli.experiments.config import list_experiments, load_experiment

    assert load_experiment("zeroshot-vit-b-32").settings["model"]["encoder"] == "test-vit"
    assert [e.name for e in list_experiments()].count("zeroshot-vit-b-32") == 1
    assert load_prompt_set("seed").templates == ("my own {}",)
    assert load_prompt_set("mine").templates == ("a scan: {}",)
    assert {"seed", "mine", "radiology"} <= set(list_prompt_sets())


def test_user_label_names_replace_the_builtin_file(user_dir, monkeypatch):
    from medclip_cli.data.labels import named_label_fields

    monkeypatch.setenv("MEDCLIP_CONFIG_DIR", str(user_dir))
    builtin = named_label_fields("medpix2")
    (user_dir / "labels" / "medpix2.toml").write_text('[modality.classes]\nCT = "a CT scan"\n', encoding="utf-8")
    mine = named_label_fields("medpix2")
    assert builtin["modality"].readable["CT"] == "computed tomography" and "modality_detail" in builtin
    assert mine["modality"].readable == {"CT": "a CT scan"}


def test_missing_label_file_names_both_folders(user_dir, monkeypatch):
    from medclip_cli.data.labels import named_label_fields
    from medclip_cli.errors import DataError

    monkeypatch.setenv("MEDCLIP_CONFIG_DIR", str(user_dir))
    with pytest.raises(DataError, match="my-configs/labels"):
        named_label_fields("no-such-labels")
