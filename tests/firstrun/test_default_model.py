"""The design card's commands: a default model, canonical weights, and random weights never silent."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.conftest import run_medclip
from tests.evaluation.conftest import write_medpix


@pytest.fixture
def scan(tmp_path):
    path = tmp_path / "img.png"
    Image.new("L", (40, 40), 120).save(path)
    return path


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_HUB_OFFLINE": "", "MEDCLIP_OFFLINE": ""}], ids=["offline-mode", "no-network"])
def test_no_model_named_uses_vit_b_32_openai_and_says_how_to_get_it_offline(scan, tmp_path, env):
    # An empty Hugging Face cache: the OpenAI ViT-B/32 weights are not there; this machine has no network.
    env = {**env, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    result = run_medclip("classify", scan, "--labels", "brain,chest", "--device", "cpu", env=env)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    line = lines[0]
    assert "pretrained weights 'openai' for ViT-B-32 are not in the local cache" in line
    assert "medclip weights fetch vit-b-32:openai" in line and "--model DIR" in line and "--pretrained FILE" in line

    if env["HF_HUB_OFFLINE"]:  # evaluate takes the same default (one process start is enough)
        data = write_medpix(tmp_path / "data", "test", [{"image": f"a{i}", "modality": "CT" if i % 2 else "MR"} for i in range(4)])
        evaluated = run_medclip("evaluate", "--data", data, "--task", "modality", "--device", "cpu", env=env)
        assert evaluated.returncode == 1 and "medclip weights fetch vit-b-32:openai" in evaluated.stderr


def test_random_weights_are_said_once_and_named_in_results(cli, scan, tmp_path):
    classified = cli("classify", scan, "--labels", "brain,chest", "--encoder", "test-vit", "--pretrained", "none", "--json")
    assert classified.exit_code == 0, classified.output
    warnings = [line for line in classified.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "random weights" in warnings[0] and "predictions mean nothing" in warnings[0]
    assert json.loads(classified.stdout)[0]["weights"] == "random init"

    data = write_medpix(tmp_path / "data", "test", [{"image": f"a{i}", "modality": "CT" if i % 2 else "MR"} for i in range(4)])
    out = tmp_path / "out"
    evaluated = cli("evaluate", "--data", data, "--task", "modality", "--encoder", "test-vit", "--pretrained", "none",
                    "--device", "cpu", "--output", out)  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    assert sum("predictions mean nothing" in line for line in evaluated.stderr.splitlines()) == 1
    assert "weights of test-vit/none: random init" in evaluated.stderr
    assert json.loads((out / "results.json").read_text())["models"][0]["weights"] == "random init"


def test_a_weights_file_is_named_with_its_sha256(cli, scan, tmp_path):
    import hashlib

    from medclip_cli.models import resolve_model
    from medclip_cli.models.bundle import save_bundle

    bundle = save_bundle(resolve_model(None, "test-vit", None, "none"), tmp_path / "runs" / "a" / "last")
    digest = hashlib.sha256((bundle / "model.safetensors").read_bytes()).hexdigest()
    result = cli("classify", scan, "--labels", "brain,chest", "--model", bundle, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["weights"] == f"bundle {bundle} (model.safetensors sha256 {digest})"
    assert "warning" not in result.stderr  # a trained bundle: its weights are what they are

    by_file = cli("classify", scan, "--labels", "brain,chest", "--encoder", "test-vit", "--pretrained", bundle / "model.safetensors", "--json")
    assert by_file.exit_code == 0, by_file.output
    assert json.loads(by_file.stdout)[0]["weights"] == f"file {bundle / 'model.safetensors'} (sha256 {digest})"


@pytest.mark.parametrize("command", ["embed", "probe", "explain", "search"])
def test_an_encoder_without_pretrained_gets_its_canonical_weights_in_every_command(command, scan, tmp_path):
    """`--encoder vit-b-32` means the OpenAI weights everywhere (the help says so); embed, probe,
    explain and search used to build random towers without a word."""
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    records = [{"image": f"a{i}", "modality": "CT" if i % 2 else "MR", "caption": f"scan {i}"} for i in range(4)]
    data = write_medpix(tmp_path / "data", "train", records)
    write_medpix(tmp_path / "data", "dev", records)
    files = tmp_path / "embeddings.parquet"
    if command == "search":  # a file embedded by random towers, searched with the encoder's default weights
        made = run_medclip("embed", "--data", data, "--encoder", "test-vit", "--pretrained", "none", "-o", files, "--device", "cpu")
        assert made.returncode == 0, made.stderr
    args = {
        "embed": ["--data", data, "-o", files],
        "probe": ["--data", data, "--train-split", "train", "--eval-split", "dev", "--task", "modality"],
        "explain": [scan, "--labels", "brain,chest", "--output", tmp_path / "maps"],
        "search": [files, "brain"],
    }[command]
    result = run_medclip(command, *args, "--encoder", "vit-b-32", "--device", "cpu", env=env)
    assert result.returncode == 1, result.stderr
    assert "pretrained weights 'openai' for ViT-B-32 are not in the local cache" in result.stderr


def test_a_model_name_stays_a_name_and_a_folder_becomes_absolute(tmp_path, monkeypatch):
    from medclip_cli.models.source import model_source, model_sources

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "best").mkdir(parents=True)
    # `probe --model biomedclip` / `embed --model hf-hub:org/name` were looked up as ./biomedclip.
    assert model_source("biomedclip") == {"model": "biomedclip"}
    assert model_source("hf-hub:org/name") == {"model": "hf-hub:org/name"}
    assert model_source("runs/best") == {"model": str(tmp_path / "runs" / "best")}
    sources = model_sources([], ["vit-b-32", "test-vit"], [])
    assert [(s["encoder"], s["pretrained"]) for s in sources] == [("vit-b-32", "openai"), ("test-vit", "none")]
    assert [s["encoder"] for s in model_sources([], [], [], default_model=True)] == ["vit-b-32"]
