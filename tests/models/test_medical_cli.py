"""The medical CLIPs through the commands: offline errors, listing, side-by-side evaluation,
fine-tuning from every format and loading the result again (in medclip and in its own library)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import write_medpix_manifest
from tests.models.conftest import BIOMEDCLIP_REPO, PUBMEDCLIP_REPO, SIGLIP_REPO
from tests.models.formats import REVISION

COLUMNS = ["--image-column", "scan_file", "--caption-column", "findings", "--label-column", "kind", "--split-column", "subset"]


@pytest.fixture
def empty_offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "empty-hub"


@pytest.mark.parametrize(
    "reference, fetch",
    [("biomedclip", "biomedclip"), ("medsiglip", "medsiglip"), ("hf-hub:someone/some-clip", "someone/some-clip")],
)
def test_an_uncached_model_offline_is_one_line_naming_what_to_fetch(cli, empty_offline_cache, tmp_path, reference, fetch):
    image = tmp_path / "scan.png"
    from PIL import Image

    Image.new("RGB", (40, 40)).save(image)
    result = cli("classify", image, "--labels", "CT,MRI", "--model", reference)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"medclip weights fetch {fetch}" in lines[0] and "HF_HUB_OFFLINE" in lines[0]


def test_weights_fetch_offline_says_so_in_one_line(cli, empty_offline_cache):
    result = cli("weights", "fetch", "pubmedclip")
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "HF_HUB_OFFLINE" in result.output


def test_encoders_lists_the_medical_clips_with_hub_id_licence_and_citation(cli):
    rows = {r.get("name"): r for r in json.loads(cli("encoders", "--json").stdout)}
    assert rows["biomedclip"]["hub_id"] == "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    assert rows["pubmedclip"]["format"] == "transformers" and rows["pubmedclip"]["licence"] == "MIT"
    assert rows["medsiglip"]["hub_id"] == "google/medsiglip-448" and "2507.05201" in rows["medsiglip"]["citation"]
    assert {"biomedclip", "quiltnet", "pubmedclip", "plip", "medsiglip"} <= set(rows)


def test_a_complete_model_refuses_another_text_tower(cli, tmp_path):
    from PIL import Image

    image = tmp_path / "scan.png"
    Image.new("RGB", (40, 40)).save(image)
    result = cli("classify", image, "--labels", "CT,MRI", "--encoder", "biomedclip", "--text-encoder", "minilm-l6")
    assert result.exit_code == 2 and "complete model" in result.output


def _model_references(models) -> list[str]:
    return [
        f"hf-hub:{BIOMEDCLIP_REPO}",
        PUBMEDCLIP_REPO,
        f"hf-hub:{SIGLIP_REPO}",
        str(models.torchscript),
        str(models.quiltnet),
    ]


def test_evaluate_compares_every_format_on_the_same_images(cli, offline_hub, tmp_path):
    manifest = write_medpix_manifest(tmp_path / "data", {"dev": 3})
    args = [a for ref in _model_references(offline_hub) for a in ("--model", ref)]
    out = tmp_path / "eval"
    result = cli(
        "evaluate", "--data", manifest, *COLUMNS, "--split", "dev", "--task", "kind", "--task", "retrieval",
        *args, "--device", "cpu", "--output", out, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "results.json").read_text())
    models = report["models"]
    assert len(models) == 5 and {m["tasks"]["kind"]["n_images"] for m in models} == {6}
    inputs = [m["inputs"] for m in models]
    assert [i["context_length"] for i in inputs] == [24, 24, 16, 77, 77]
    assert [i["preprocess"]["size"] for i in inputs] == [160, 32, 32, 32, 32]
    assert [i["scoring"] for i in inputs] == ["softmax", "softmax", "sigmoid", "softmax", "softmax"]
    assert inputs[2]["logit_bias"] == pytest.approx(-3.0)
    assert models[0]["manifest"]["provenance"]["hub_revision"] == REVISION
    assert models[1]["manifest"]["provenance"]["hub_id"] == PUBMEDCLIP_REPO
    table = cli(
        "evaluate", "--data", manifest, *COLUMNS, "--split", "dev", "--task", "kind", *args[:4], "--device", "cpu",
    )  # fmt: skip
    assert "context / scoring" in table.output and "24 / softmax" in table.output


# About 20 s each on a loaded CPU: the hub formats with their own tokenizer towers run by default.
@pytest.mark.parametrize(
    "which",
    [
        "biomedclip",
        "siglip",
        pytest.param("pubmedclip", marks=pytest.mark.slow),
        pytest.param("torchscript", marks=pytest.mark.slow),
        pytest.param("quiltnet", marks=pytest.mark.slow),
    ],
)
def test_finetune_from_each_format_runs_and_reloads(cli, offline_hub, tmp_path, which):
    import open_clip

    from medclip_cli.models.sources import open_model

    reference = dict(zip(["biomedclip", "pubmedclip", "siglip", "torchscript", "quiltnet"], _model_references(offline_hub)))[which]
    manifest = write_medpix_manifest(tmp_path / "data", {"train": 4, "dev": 2})
    out = tmp_path / "run"
    result = cli(
        "finetune", "--model", reference, "--data", manifest, *COLUMNS, "--output", out, "--epochs", "1",
        "--batch-size", "4", "--max-steps", "2", "--device", "cpu", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    start, tuned = open_model(reference), open_model(out / "last")
    assert tuned.manifest["provenance"]["source"] == "medclip finetune"
    texts = ["a ct of the chest", "mri"]
    pixels = torch.randn(2, 3, start.preprocess.image_size, start.preprocess.image_size)
    assert tuned.preprocess == start.preprocess and tuned.context_length == start.context_length
    assert not torch.allclose(tuned.encode_images(pixels), start.encode_images(pixels))  # it trained
    images, text_f = tuned.encode_images(pixels), tuned.encode_texts(texts)
    if which in ("pubmedclip", "siglip"):  # saved with save_pretrained: transformers loads it
        from transformers import AutoModel

        own = AutoModel.from_pretrained(out / "last").eval()
        with torch.no_grad():
            ref_images = torch.nn.functional.normalize(own.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
        assert float((ref_images - images).abs().max()) <= 1e-5
        if which == "siglip":  # the sigmoid loss trains the bias; a softmax loss would leave it alone
            assert tuned.logit_bias != pytest.approx(start.logit_bias, abs=1e-7)
    else:  # an open_clip local-dir bundle: open_clip loads it
        own, _, _ = open_clip.create_model_and_transforms(f"local-dir:{out / 'last'}")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{out / 'last'}")
        own.eval()
        with torch.no_grad():
            ref_images = torch.nn.functional.normalize(own.encode_image(pixels), dim=-1)
            ref_texts = torch.nn.functional.normalize(own.encode_text(tokenizer(texts)), dim=-1)
        assert float((ref_images - images).abs().max()) <= 1e-5
        assert float((ref_texts - text_f).abs().max()) <= 1e-5


@pytest.mark.parametrize("name", ["vit-b-32", "vit-b-32:openai"])
def test_weights_fetch_takes_open_clip_tags_and_the_default_model(cli, empty_offline_cache, monkeypatch, name):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(empty_offline_cache))  # read by open_clip's lookup
    result = cli("weights", "fetch", name)
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and "'openai' for ViT-B-32" in line


def test_weights_fetch_of_an_unknown_name_suggests_close_ones(cli):
    result = cli("weights", "fetch", "biomedclp")
    assert result.exit_code == 2 and "biomedclip" in result.output
