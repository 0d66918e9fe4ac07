"""Each published format loads in medclip and gives the reference library's numbers to 1e-5:
image and text embeddings, class probabilities, tokens and preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tests.models.conftest import BIOMEDCLIP_REPO, PUBMEDCLIP_REPO, SIGLIP_REPO
from tests.models.formats import REVISION

TEXTS = ["a ct of the chest", "mri brain lesion", "x ray of bone"]
CLIP_TEXTS = ["lower newer", "low wider", "lowest"]  # words of the tiny CLIP BPE vocabulary
ATOL = 1e-5


def _medclip_scores(model, pixels, texts):
    from medclip_cli.evaluation.zeroshot import build_zero_shot_classifier, zero_shot_probabilities

    images = model.encode_images(pixels)
    classifier = build_zero_shot_classifier(model, texts, ["{}"])
    return images, model.encode_texts(texts), zero_shot_probabilities(images, classifier, model.logit_scale, model.logit_bias)


def _assert_close(a, b):
    assert a.shape == b.shape
    assert float((a.float() - b.float()).abs().max()) <= ATOL


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _medclip_pixels(model, image):
    from medclip_cli.data.preprocess import normalize_batch, resize_to_uint8

    return normalize_batch(resize_to_uint8(image, model.preprocess)[None], model.preprocess)


def test_open_clip_hub_model_with_hf_text_tower_equals_open_clip(offline_hub):
    import open_clip

    from medclip_cli.models.sources import open_model

    ref, _, ref_preprocess = open_clip.create_model_and_transforms(f"hf-hub:{BIOMEDCLIP_REPO}")
    ref_tokenizer = open_clip.get_tokenizer(f"hf-hub:{BIOMEDCLIP_REPO}")
    ref.eval()
    model = open_model(f"hf-hub:{BIOMEDCLIP_REPO}")
    provenance = model.manifest["provenance"]
    assert provenance["hub_id"] == BIOMEDCLIP_REPO and provenance["hub_revision"] == REVISION
    assert provenance["text_hub_revision"] == REVISION
    assert model.context_length == 24 and model.preprocess.image_size == 160
    assert torch.equal(model.tokenize(TEXTS), ref_tokenizer(TEXTS))

    image = _photo(200, 170)
    pixels = _medclip_pixels(model, image)
    _assert_close(pixels, ref_preprocess(image)[None])
    images, texts, probs = _medclip_scores(model, pixels, TEXTS)
    with torch.no_grad():
        ref_images = F.normalize(ref.encode_image(pixels), dim=-1)
        ref_texts = F.normalize(ref.encode_text(ref_tokenizer(TEXTS)), dim=-1)
        ref_probs = (ref.logit_scale.exp() * ref_images @ ref_texts.T).softmax(dim=-1)
    _assert_close(images, ref_images)
    _assert_close(texts, ref_texts)
    _assert_close(probs, ref_probs)


def test_open_clip_folder_with_clip_text_equals_open_clip_local_dir(offline_hub):
    import open_clip

    from medclip_cli.models.sources import open_model

    ref, _, _ = open_clip.create_model_and_transforms(f"local-dir:{offline_hub.quiltnet}")
    ref_tokenizer = open_clip.get_tokenizer(f"local-dir:{offline_hub.quiltnet}")
    ref.eval()
    model = open_model(offline_hub.quiltnet)
    pixels = torch.randn(2, 3, 32, 32)
    images, texts, probs = _medclip_scores(model, pixels, TEXTS)
    with torch.no_grad():
        ref_images = F.normalize(ref.encode_image(pixels), dim=-1)
        ref_texts = F.normalize(ref.encode_text(ref_tokenizer(TEXTS)), dim=-1)
        ref_probs = (ref.logit_scale.exp() * ref_images @ ref_texts.T).softmax(dim=-1)
    _assert_close(images, ref_images)
    _assert_close(texts, ref_texts)
    _assert_close(probs, ref_probs)


def _transformers_reference(folder, texts, pixels):
    from transformers import AutoModel, AutoTokenizer

    ref = AutoModel.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    length = ref.config.text_config.max_position_embeddings
    tokens = tokenizer(texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = ref(pixel_values=pixels, **tokens)
    return out, tokens["input_ids"]


def test_transformers_clip_from_the_hub_cache_equals_transformers(offline_hub):
    from transformers import CLIPImageProcessor

    from medclip_cli.models.sources import open_model

    model = open_model(PUBMEDCLIP_REPO)  # a bare hub id, as PubMedCLIP's model card names it
    assert model.manifest["provenance"]["hub_revision"] == REVISION
    assert model.logit_bias is None and model.context_length == 24
    image = _photo(32, 48)
    pixels = _medclip_pixels(model, image)
    ref_pixels = CLIPImageProcessor.from_pretrained(offline_hub.pubmedclip)(image, return_tensors="pt")["pixel_values"]
    _assert_close(pixels, ref_pixels)

    out, ref_tokens = _transformers_reference(offline_hub.pubmedclip, CLIP_TEXTS, pixels)
    assert torch.equal(model.tokenize(CLIP_TEXTS), ref_tokens)
    images, texts, probs = _medclip_scores(model, pixels, CLIP_TEXTS)
    _assert_close(images, out.image_embeds)
    _assert_close(texts, out.text_embeds)
    _assert_close(probs, out.logits_per_image.softmax(dim=-1))


def test_siglip_scores_with_its_sigmoid_and_bias_like_transformers(offline_hub):
    from medclip_cli.models.sources import open_model

    model = open_model(f"hf-hub:{SIGLIP_REPO}")
    assert model.logit_bias == pytest.approx(-3.0) and model.logit_scale == pytest.approx(float(np.exp(2.5)), rel=1e-6)
    assert model.preprocess.resize_mode == "squash" and model.context_length == 16
    pixels = torch.randn(2, 3, 32, 32)
    out, ref_tokens = _transformers_reference(offline_hub.siglip, TEXTS, pixels)
    assert torch.equal(model.tokenize(TEXTS), ref_tokens)
    images, texts, probs = _medclip_scores(model, pixels, TEXTS)
    _assert_close(images, out.image_embeds)
    _assert_close(texts, out.text_embeds)
    _assert_close(probs, torch.sigmoid(out.logits_per_image))  # transformers' own zero-shot scores
    assert not torch.allclose(probs.sum(dim=1), torch.ones(2))  # a sigmoid per class, not a softmax


def test_siglip_whose_tokenizer_gives_an_attention_mask_gets_it(tiny_models, tmp_path):
    from medclip_cli.models.sources import open_model
    from tests.models.formats import write_transformers_siglip

    folder = write_transformers_siglip(tmp_path / "siglip-masked", model_input_names=("input_ids", "attention_mask"))
    model = open_model(folder)
    out, _ = _transformers_reference(folder, TEXTS, torch.randn(1, 3, 32, 32))
    _assert_close(model.encode_texts(TEXTS), out.text_embeds)


def test_openai_torchscript_archive_equals_open_clip_load_openai_model(offline_hub):
    import open_clip

    from medclip_cli.models.weights import load_state_dict_file
    from medclip_cli.models.sources import open_model

    ref = open_clip.load_openai_model(str(offline_hub.torchscript), precision="fp32", device="cpu").eval()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    model = open_model(offline_hub.torchscript)
    assert model.model_cfg["quick_gelu"] and model.model_cfg["vision_cfg"]["image_size"] == 32
    pixels = torch.randn(2, 3, 32, 32)
    images, texts, probs = _medclip_scores(model, pixels, TEXTS)
    with torch.no_grad():
        ref_images = F.normalize(ref.encode_image(pixels), dim=-1)
        ref_texts = F.normalize(ref.encode_text(tokenizer(TEXTS)), dim=-1)
        ref_probs = (ref.logit_scale.exp() * ref_images @ ref_texts.T).softmax(dim=-1)
    _assert_close(images, ref_images)
    _assert_close(texts, ref_texts)
    _assert_close(probs, ref_probs)
    # As --pretrained of an encoder, the archive is a state dict too (it was "corrupt or unreadable").
    state = load_state_dict_file(offline_hub.torchscript)
    assert "visual.proj" in state and "input_resolution" not in state
    assert torch.jit.load(str(offline_hub.torchscript)).state_dict()["visual.proj"].dtype == torch.float16
