"""The download path against a hub on 127.0.0.1: downloaded once, cached, the revision recorded,
then found offline; ``medclip weights fetch`` fetches a model and its text tower's files."""

from __future__ import annotations

import json

import pytest

from tests.models.fake_hub import FakeHub
from tests.models.formats import REVISION

SERVED = "0fedcba9876543210fedcba9876543210fedcba9"


@pytest.fixture
def served_hub(tiny_models, tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    repos = {
        "medclip-test/tiny-biomedclip": tiny_models.biomedclip,
        "medclip-test/tiny-pubmedbert": tiny_models.bert,
        "medclip-test/tiny-pubmedclip": tiny_models.pubmedclip,
    }
    cache = tmp_path / "hub-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with FakeHub(repos, SERVED) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        yield hub, cache


def test_a_hub_model_is_downloaded_once_then_loads_offline(served_hub, monkeypatch):
    from medclip_cli.models.sources import open_model

    hub, cache = served_hub
    model = open_model("medclip-test/tiny-pubmedclip")
    assert model.manifest["provenance"]["hub_revision"] == SERVED != REVISION
    snapshot = cache / "models--medclip-test--tiny-pubmedclip" / "snapshots" / SERVED
    assert (snapshot / "model.safetensors").is_file() and (snapshot / "tokenizer.json").is_file()
    downloads = [r for r in hub.requests if r.startswith("GET") and "/resolve/" in r]
    open_model("medclip-test/tiny-pubmedclip")  # cached: nothing is downloaded again
    assert [r for r in hub.requests if r.startswith("GET") and "/resolve/" in r] == downloads
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert open_model("hf-hub:medclip-test/tiny-pubmedclip").manifest["provenance"]["hub_revision"] == SERVED


def test_weights_fetch_downloads_a_model_and_its_text_tower_files(cli, served_hub, monkeypatch):
    hub, cache = served_hub
    result = cli("weights", "fetch", "hf-hub:medclip-test/tiny-biomedclip", "--json")
    assert result.exit_code == 0, result.output
    fetched = json.loads(result.stdout)["fetched"]
    assert [r["hub_id"] for r in fetched] == ["medclip-test/tiny-biomedclip", "medclip-test/tiny-pubmedbert"]
    assert all(r["hub_revision"] == SERVED for r in fetched)
    tower = cache / "models--medclip-test--tiny-pubmedbert" / "snapshots" / SERVED
    assert (tower / "tokenizer_config.json").is_file()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from medclip_cli.models.sources import open_model

    model = open_model("hf-hub:medclip-test/tiny-biomedclip")  # offline, from what fetch left
    assert model.manifest["provenance"]["text_hub_revision"] == SERVED


def test_an_unknown_repository_is_one_line(cli, served_hub):
    result = cli("weights", "fetch", "medclip-test/no-such-model")
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "medclip-test/no-such-model" in result.output
