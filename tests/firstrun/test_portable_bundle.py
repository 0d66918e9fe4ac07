"""A bundle with a Hugging Face text tower carries no path of this machine."""

from __future__ import annotations

import json
import shutil
import sys

import torch

from medclip_cli.models import resolve_model
from medclip_cli.models.bundle import load_bundle, save_bundle


def test_minilm_bundle_names_its_tower_by_hub_id_and_loads_from_a_copy(tmp_path):
    model = resolve_model(None, "test-vit", "minilm-l6", "none")
    bundle = save_bundle(model, tmp_path / "a" / "last")
    config = json.loads((bundle / "open_clip_config.json").read_text(encoding="utf-8"))
    text_cfg = config["model_cfg"]["text_cfg"]
    assert text_cfg["hf_model_name"] == text_cfg["hf_tokenizer_name"] == "sentence-transformers/all-MiniLM-L6-v2"
    for saved in bundle.glob("*.json"):  # nothing names this machine's folders
        text = saved.read_text(encoding="utf-8")
        assert "site-packages" not in text and sys.prefix not in text and str(tmp_path) not in text, saved.name

    copy = tmp_path / "colleague" / "model"
    shutil.copytree(bundle, copy)
    shutil.rmtree(tmp_path / "a")
    loaded = load_bundle(copy)
    texts = ["an axial CT of the head", "a sagittal MR of the spine"]
    with torch.no_grad():
        assert torch.allclose(loaded.encode_texts(texts), model.encode_texts(texts), atol=1e-6)
    assert loaded.tokenizer(texts).tolist() == model.tokenizer(texts).tolist()
