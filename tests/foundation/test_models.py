"""Model assembly, bundles (also through open_clip's local-dir), weights safety, offline errors."""

from __future__ import annotations

import pickle

import pytest
import torch

from medclip_cli.errors import ModelError, PretrainedUnavailableError, UsageError
from medclip_cli.models import resolve_model
from medclip_cli.models.bundle import load_bundle, save_bundle
from medclip_cli.models.factory import ModelRequest, build_model


def _outputs(model, seed=0):
    torch.manual_seed(seed)
    size = model.preprocess.image_size
    pixels = torch.randn(2, 3, size, size)
    model.module.eval()
    return model.encode_images(pixels), model.encode_texts(["brain MRI", "chest CT, axial"])


@pytest.mark.parametrize(
    "encoder,text_encoder",
    [("test-vit", None), ("test-resnet", None), ("test-vit", "test-text"), ("timm:resnet18", "test-text")],
)
def test_bundle_round_trip_gives_identical_outputs(tmp_path, encoder, text_encoder):
    model = resolve_model(encoder=encoder, text_encoder=text_encoder)
    save_bundle(model, tmp_path / "bundle", provenance={"source": "test"})
    loaded = load_bundle(tmp_path / "bundle")
    for a, b in zip(_outputs(model), _outputs(loaded)):
        assert torch.equal(a, b)
    assert loaded.manifest["image_encoder"] == model.manifest["image_encoder"]
    assert loaded.manifest["provenance"]["source"] == "test"
    assert loaded.preprocess == model.preprocess


def test_bundle_loads_in_open_clip(tmp_path):
    import open_clip

    model = resolve_model(encoder="test-vit")
    save_bundle(model, tmp_path / "b")
    oc_model, _, oc_preprocess = open_clip.create_model_and_transforms(f"local-dir:{tmp_path / 'b'}")
    oc_model.eval()
    model.module.eval()
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(oc_model.encode_image(pixels), model.module.encode_image(pixels))
    tokenizer = open_clip.get_tokenizer(f"local-dir:{tmp_path / 'b'}")
    assert torch.equal(tokenizer(["a scan"]), model.tokenize(["a scan"]))


def test_minilm_text_tower_is_the_pretrained_sentence_transformer():
    from sentence_transformers import SentenceTransformer

    from medclip_cli.default_plugins.hf_text_encoders import minilm_path

    model = resolve_model(encoder="test-vit", text_encoder="minilm-l6")
    assert model.manifest["text_pretrained"] == "pretrained"
    texts = ["axial CT of the abdomen", "sagittal MRI of the lumbar spine"]
    tokens = model.tokenize(texts)
    text = model.module.text
    with torch.no_grad():
        mask = (tokens != text.config.pad_token_id).long()
        pooled = text.pooler(text.transformer(input_ids=tokens, attention_mask=mask), mask)
    reference = SentenceTransformer(str(minilm_path()), device="cpu").encode(texts, convert_to_tensor=True)
    assert torch.allclose(torch.nn.functional.normalize(pooled, dim=-1), reference, atol=1e-4)


def test_bundle_with_hf_text_tower_round_trips(tmp_path):
    model = resolve_model(encoder="test-vit", text_encoder="minilm-l6")
    save_bundle(model, tmp_path / "b")
    assert (tmp_path / "b" / "tokenizer.json").is_file()
    loaded = load_bundle(tmp_path / "b")
    for a, b in zip(_outputs(model), _outputs(loaded)):
        assert torch.allclose(a, b, atol=1e-6)


def test_save_bundle_replaces_atomically(tmp_path):
    first = resolve_model(encoder="test-vit")
    save_bundle(first, tmp_path / "b")
    second = resolve_model(encoder="test-vit")
    save_bundle(second, tmp_path / "b")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert torch.equal(_outputs(load_bundle(tmp_path / "b"))[0], _outputs(second)[0])


def test_pretrained_openai_offline_fails_at_once_with_one_line():
    with pytest.raises(PretrainedUnavailableError) as info:
        build_model(ModelRequest("vit-b-32", pretrained="openai"))
    message = str(info.value)
    assert "'openai'" in message and "medclip weights fetch vit-b-32:openai" in message and "\n" not in message


def test_unknown_pretrained_tag_is_a_usage_error():
    with pytest.raises(UsageError, match="not a tag of vit-b-32"):
        build_model(ModelRequest("vit-b-32", pretrained="imagenet-42"))


def test_openai_tag_uses_quick_gelu():
    from medclip_cli.encoders import get_encoder

    assert get_encoder("vit-b-32").build("openai").quick_gelu is True
    assert get_encoder("rn50").build("openai").quick_gelu is True
    assert get_encoder("vit-b-32").build(None).quick_gelu is False


def test_weights_file_round_trip_and_architecture_mismatch(tmp_path):
    from safetensors.torch import save_model

    model = resolve_model(encoder="test-vit")
    save_model(model.module, str(tmp_path / "w.safetensors"))
    again = resolve_model(encoder="test-vit", pretrained=str(tmp_path / "w.safetensors"))
    assert torch.equal(_outputs(model)[0], _outputs(again)[0])
    with pytest.raises(ModelError, match="do not match this architecture"):
        resolve_model(encoder="test-resnet", pretrained=str(tmp_path / "w.safetensors"))


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned-by-pickle",))


def test_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"visual.proj": _Exploit()}, fh)
    with pytest.raises(ModelError, match="refused to load"):
        resolve_model(encoder="test-vit", pretrained=str(path))
    assert not (tmp_path / "pwned-by-pickle").exists()


def test_corrupt_safetensors_header(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\xff\xff\xff\xff\x00\x00\x00\x00{not json")
    with pytest.raises(ModelError, match="corrupt or unreadable"):
        resolve_model(encoder="test-vit", pretrained=str(path))


def test_model_folder_without_manifest(tmp_path):
    with pytest.raises(ModelError, match="not a model bundle"):
        resolve_model(model_dir=tmp_path)


def test_text_encoder_as_image_encoder_is_a_usage_error():
    with pytest.raises(UsageError, match="is a text encoder"):
        resolve_model(encoder="minilm-l6")


def test_loading_a_bundle_leaves_random_init_working(tmp_path):
    import torch.nn.init as init

    before = init.normal_
    save_bundle(resolve_model(encoder="test-vit"), tmp_path / "b")
    load_bundle(tmp_path / "b")
    assert init.normal_ is before
    torch.manual_seed(1)
    a = resolve_model(encoder="test-vit").module.visual.conv1.weight
    torch.manual_seed(2)
    b = resolve_model(encoder="test-vit").module.visual.conv1.weight
    assert not torch.equal(a, b) and a.std() > 0
