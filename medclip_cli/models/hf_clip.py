"""Hugging Face transformers dual encoders (``CLIPModel``, ``SiglipModel``) as medclip models.

A folder written by ``save_pretrained`` (PubMedCLIP, PLIP, MedSigLIP on the hub) loads with its
own tokenizer, image processor settings and context length. :class:`HFDualEncoder` gives the
transformers model the interface the rest of medclip uses (``encode_image``, ``encode_text``,
``logit_scale``, ``lock_*_tower``); its parameters are the transformers model's own tensors under
the same names, so a fine-tuned model is saved back with ``save_pretrained`` and loads again in
transformers (``CLIPModel.from_pretrained(DIR)``) as well as in medclip.

SigLIP scores an image-text pair with ``sigmoid(exp(logit_scale) * cos + logit_bias)``; medclip
keeps that scoring (``ClipModel.logit_bias``) for class probabilities and trains SigLIP models with
the sigmoid loss (``training/sigmoid_loss.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from medclip_cli.data.preprocess import PreprocessConfig
from medclip_cli.errors import ModelError

FORMAT = "transformers"
MANIFEST_NAME = "medclip.json"  # beside config.json: what medclip knows about the model
SIGMOID_TYPES = ("siglip", "siglip2")
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}


def is_hf_dual_encoder(folder: Path) -> bool:
    """A folder with a transformers ``config.json`` of a CLIP-like dual encoder."""
    config = _read_json(folder / "config.json") if (folder / "config.json").is_file() else None
    return isinstance(config, dict) and config.get("model_type") in ("clip", *SIGMOID_TYPES)


class HFDualEncoder(nn.Module):
    """A transformers dual encoder with open_clip's methods; its state dict is the model's own."""

    def __init__(self, hf_model: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "hf", hf_model)  # a plain attribute: parameter names stay the model's
        for name, child in hf_model._modules.items():
            self.add_module(name, child)
        for name, param in hf_model._parameters.items():
            self.register_parameter(name, param)
        self.model_type = hf_model.config.model_type
        # Padding id to mask out of text attention, when the model's tokenizer hands the model an
        # attention mask (bidirectional SigLIP text towers); None: ids alone, as the model was trained.
        self.text_pad_id: int | None = None

    @property
    def sigmoid(self) -> bool:
        return "logit_bias" in self._parameters

    @property
    def visual(self) -> nn.Module:
        return self.vision_model

    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = _features(self.hf.get_image_features(pixel_values=pixels))
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        # CLIP pools at the first end-of-text token under a causal mask: padding after it changes
        # nothing. SigLIP pools the last of its fixed 64 positions and its tokenizer gives no mask.
        mask = None if self.text_pad_id is None else (tokens != self.text_pad_id).long()
        features = _features(self.hf.get_text_features(input_ids=tokens, attention_mask=mask))
        return F.normalize(features, dim=-1) if normalize else features

    def forward(self, image: torch.Tensor | None = None, text: torch.Tensor | None = None):
        image_f = self.encode_image(image, normalize=True) if image is not None else None
        text_f = self.encode_text(text, normalize=True) if text is not None else None
        return image_f, text_f, self.logit_scale.exp()

    def lock_image_tower(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        _lock_tower(self.vision_model, getattr(self, "visual_projection", None), unlocked_groups)

    def lock_text_tower(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        _lock_tower(self.text_model, getattr(self, "text_projection", None), unlocked_layers)


def _features(out) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output holds the projected features.
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _lock_tower(tower: nn.Module, projection: nn.Module | None, unlocked: int) -> None:
    """Freeze a tower but its last ``unlocked`` encoder layers (and then its final norm, head and
    projection too)."""
    parts = [tower] + ([projection] if projection is not None else [])
    for part in parts:
        for p in part.parameters():
            p.requires_grad = False
    if not unlocked:
        return
    layers = tower.encoder.layers
    if unlocked > len(layers):
        from medclip_cli.errors import UsageError

        raise UsageError(f"this tower has only {len(layers)} layers to unlock, not {unlocked}")
    tail = list(layers[len(layers) - unlocked :]) + [projection]
    tail += [getattr(tower, n, None) for n in ("post_layernorm", "final_layer_norm", "head")]
    for part in tail:
        if part is not None:
            for p in part.parameters():
                p.requires_grad = True


class HFTextTokenizer:
    """The model's own tokenizer, padded to its full context as it was trained (ids only)."""

    def __init__(self, tokenizer, context_length: int) -> None:
        self.tokenizer = tokenizer
        self.context_length = context_length

    def __call__(self, texts, context_length: int | None = None) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        encoded = self.tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=context_length or self.context_length,
            return_tensors="pt",
        )
        return encoded["input_ids"]


def load_hf_dual_encoder(folder: str | Path, provenance: dict | None = None):
    """A :class:`~medclip_cli.models.clip_model.ClipModel` from a transformers dual-encoder folder."""
    from transformers import AutoTokenizer

    from medclip_cli.models.clip_model import ClipModel
    from medclip_cli.models.factory import _quiet_transformers

    folder = Path(folder)
    config = _read_json(folder / "config.json")
    model_type = config.get("model_type")
    _quiet_transformers()
    try:
        hf_model = _model_class(model_type).from_pretrained(folder).float().eval()  # fp16 checkpoints too
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except ImportError as exc:  # e.g. SigLIP's SentencePiece tokenizer without its package
        raise ModelError(
            f"{folder}: the {model_type} model's tokenizer needs a package that is not installed ({_first_line(exc)})",
            hint="pip install sentencepiece protobuf",
        ) from exc
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"{folder}: cannot load the transformers {model_type} model ({_first_line(exc)})") from exc
    preprocess = _preprocess(folder, hf_model.config)
    text_config = hf_model.config.text_config
    context_length = int(text_config.max_position_embeddings)
    model_cfg = {
        "format": FORMAT,
        "model_type": model_type,
        "embed_dim": _embed_dim(hf_model.config),
        "vision_cfg": {"image_size": preprocess.image_size},
        "text_cfg": {"context_length": context_length},
    }
    saved = _read_json(folder / MANIFEST_NAME) if (folder / MANIFEST_NAME).is_file() else {}
    manifest = saved.get("medclip") or {
        "format_version": 1,
        "image_encoder": f"transformers:{model_type}",
        "text_encoder": f"transformers:{model_type}",
        "pretrained": str(folder),
        "provenance": provenance or {"source": str(folder)},
    }
    if provenance and saved:
        manifest = {**manifest, "provenance": {**manifest.get("provenance", {}), **provenance}}
    module = HFDualEncoder(hf_model)
    if model_type in SIGMOID_TYPES and "attention_mask" in tokenizer.model_input_names:
        module.text_pad_id = tokenizer.pad_token_id
    return ClipModel(module, HFTextTokenizer(tokenizer, context_length), preprocess, model_cfg, manifest)


def _model_class(model_type: str | None):
    import transformers

    classes = {"clip": "CLIPModel", "siglip": "SiglipModel", "siglip2": "Siglip2Model"}
    name = classes.get(model_type or "")
    if name is None or not hasattr(transformers, name):
        raise ModelError(f"transformers model type {model_type!r} is not a dual encoder medclip can load")
    return getattr(transformers, name)


def _embed_dim(config) -> int:
    if config.model_type == "clip":
        return int(config.projection_dim)
    text = config.text_config
    return int(getattr(text, "projection_size", None) or text.hidden_size)


def _preprocess(folder: Path, config) -> PreprocessConfig:
    """open_clip-style preprocessing equal to the model's image processor (PIL resize, then crop)."""
    path = folder / "preprocessor_config.json"
    cfg = _read_json(path) if path.is_file() else {}
    size = cfg.get("size", {})
    crop = cfg.get("crop_size", size)
    do_crop = cfg.get("do_center_crop", config.model_type == "clip")
    if isinstance(size, int):
        size = {"shortest_edge": size}
    if isinstance(crop, int):
        crop = {"height": crop, "width": crop}
    image_size = int(config.vision_config.image_size)
    if do_crop and "height" in crop:
        image_size = int(crop["height"])
    elif "height" in size:
        image_size = int(size["height"])
    elif "shortest_edge" in size:
        image_size = int(size["shortest_edge"])
    mean = tuple(cfg.get("image_mean", (0.48145466, 0.4578275, 0.40821073)))
    std = tuple(cfg.get("image_std", (0.26862954, 0.26130258, 0.27577711)))
    mode = "shortest" if "shortest_edge" in size else "squash"
    return PreprocessConfig(
        image_size=image_size,
        mean=mean,
        std=std,
        interpolation=_RESAMPLE.get(int(cfg.get("resample", 3)), "bicubic"),
        resize_mode=mode,
    )


def save_hf_dual_encoder(model, directory: str | Path, provenance: dict | None = None) -> Path:
    """Write ``model`` with ``save_pretrained`` (weights, config, tokenizer, image processor) plus
    ``medclip.json``: the folder loads in transformers and in medclip."""
    from medclip_cli.models.model_folder import new_model_folder, saved_manifest

    directory = Path(directory)
    manifest = saved_manifest(model, provenance)
    if model.logit_bias is not None:
        manifest["logit_bias"] = model.logit_bias
    with new_model_folder(directory, "model") as tmp:
        model.module.hf.save_pretrained(tmp)
        model.tokenizer.tokenizer.save_pretrained(tmp)
        _image_processor(model).save_pretrained(tmp)
        payload = {"medclip": manifest, "preprocess_cfg": model.preprocess.to_open_clip()}
        (tmp / MANIFEST_NAME).write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return directory


def _image_processor(model):
    """An image processor with the model's preprocessing (what transformers users load with it)."""
    from transformers import CLIPImageProcessor, SiglipImageProcessor

    p = model.preprocess
    resample = {v: k for k, v in _RESAMPLE.items()}[p.interpolation]
    common = {"image_mean": list(p.mean), "image_std": list(p.std), "resample": resample}
    if p.resize_mode == "shortest":
        return CLIPImageProcessor(
            size={"shortest_edge": p.image_size}, crop_size={"height": p.image_size, "width": p.image_size}, **common
        )
    return SiglipImageProcessor(size={"height": p.image_size, "width": p.image_size}, **common)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: not readable JSON ({type(exc).__name__})") from exc
    return data if isinstance(data, dict) else {}


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
