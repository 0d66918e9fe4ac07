"""Tiny models in each published format, built once per session, and a hub cache holding them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.models import formats

BIOMEDCLIP_REPO = "medclip-test/tiny-biomedclip"
BERT_REPO = "medclip-test/tiny-pubmedbert"
PUBMEDCLIP_REPO = "medclip-test/tiny-pubmedclip"
SIGLIP_REPO = "medclip-test/tiny-medsiglip"


@dataclass(frozen=True)
class TinyModels:
    cache: Path  # a hub cache (HF_HUB_CACHE) holding the hub repos below
    biomedclip: Path  # its snapshot folder
    bert: Path
    quiltnet: Path  # a plain local open_clip folder
    pubmedclip: Path  # snapshot of a transformers CLIPModel
    siglip: Path  # snapshot of a transformers SiglipModel
    torchscript: Path  # an OpenAI-style .pt


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> TinyModels:
    root = tmp_path_factory.mktemp("tiny_formats")
    cache = root / "hub"
    bert = formats.write_tiny_bert(root / "src" / "bert")
    bio = formats.write_open_clip_hub_model(root / "src" / "bio", formats.biomedclip_like_config(BERT_REPO), bert)
    return TinyModels(
        cache=cache,
        biomedclip=formats.put_in_hub_cache(cache, BIOMEDCLIP_REPO, bio),
        bert=formats.put_in_hub_cache(cache, BERT_REPO, bert),
        quiltnet=formats.write_open_clip_hub_model(root / "quiltnet", formats.quiltnet_like_config(), seed=1),
        pubmedclip=formats.put_in_hub_cache(cache, PUBMEDCLIP_REPO, formats.write_transformers_clip(root / "src" / "clip")),
        siglip=formats.put_in_hub_cache(cache, SIGLIP_REPO, formats.write_transformers_siglip(root / "src" / "siglip")),
        torchscript=formats.write_openai_torchscript(root / "clip-cache" / "ViT-T-8.pt"),
    )


@pytest.fixture
def offline_hub(tiny_models, monkeypatch) -> TinyModels:
    """HF_HUB_CACHE at the tiny models' cache and HF_HUB_OFFLINE=1, for medclip and for the
    reference libraries (huggingface_hub reads both once at import; its constants are set too)."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_CACHE", str(tiny_models.cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tiny_models.cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tiny_models
