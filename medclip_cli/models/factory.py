"""Build a CLIP model from an image encoder and a text encoder chosen by name."""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path

from medclip_cli import __version__
from medclip_cli.data.preprocess import PreprocessConfig
from medclip_cli.encoders import EncoderSpec, TowerConfig, get_encoder, text_tower_of
from medclip_cli.errors import ModelError, UsageError
from medclip_cli.models.weights import load_into, load_state_dict_file

AUTO = "auto"
NONE_VALUES = {"", "none", "random", "scratch"}


@dataclass(frozen=True)
class ModelRequest:
    """What the user asked for: encoders and where their weights come from."""

    encoder: str
    text_encoder: str | None = None
    pretrained: str | None = None  # a tag, a weights file / bundle path, or None (random init)
    text_pretrained: str | None = AUTO  # text tower's tag; AUTO picks the sensible default
    image_size: int | None = None


def normalize_pretrained(value: str | None) -> str | None:
    if value is None or value.strip().lower() in NONE_VALUES:
        return None
    return value.strip()


def build_model(request: ModelRequest, provenance: dict | None = None):
    """Assemble, initialise and load weights for the model ``request`` describes."""
    image_spec = get_encoder(request.encoder)
    if image_spec.kind == "text":
        raise UsageError(
            f"--encoder {request.encoder!r} is a text encoder",
            hint="pass an image or CLIP encoder as --encoder and this one as --text-encoder",
        )
    text_spec = get_encoder(request.text_encoder) if request.text_encoder else text_tower_of(image_spec)
    if text_spec is not None and text_spec.kind == "image":
        raise UsageError(f"--text-encoder {request.text_encoder!r} is an image encoder")
    if text_spec is not None and text_spec.name == image_spec.name:
        text_spec = None

    pretrained = normalize_pretrained(request.pretrained)
    weights_path = None
    tag = pretrained
    if pretrained is not None and (os.sep in pretrained or Path(pretrained).exists()):
        weights_path, tag = Path(pretrained), None
        if not weights_path.exists():
            raise UsageError(f"--pretrained {pretrained}: no such file or folder")
    elif pretrained is not None and image_spec.tags() and pretrained not in image_spec.tags():
        raise UsageError(
            f"--pretrained {pretrained!r} is not a tag of {image_spec.name} "
            f"(tags: {', '.join(image_spec.tags())})",
            hint="or pass a weights file, a model bundle, or none",
        )
    image_tower = image_spec.build(tag)
    text_tag = _text_tag(text_spec, tag, request.text_pretrained)
    text_tower = text_spec.build(text_tag) if text_spec is not None else image_tower

    model_cfg = _model_config(image_tower, text_tower, request.image_size)
    preprocess = PreprocessConfig.from_open_clip(image_tower.preprocess, model_cfg["vision_cfg"]["image_size"])
    preprocess = PreprocessConfig(**{**preprocess.as_dict(), "image_size": _image_size(model_cfg)})
    module = instantiate(model_cfg)

    if image_tower.weights is not None:
        state = load_state_dict_file(Path(image_tower.weights()))
        _load_tower_weights(module, state, "image" if text_spec is not None else "all")
    if text_spec is not None and text_tower.weights is not None:
        state = load_state_dict_file(Path(text_tower.weights()))
        _load_tower_weights(module, state, "text")
    if weights_path is not None:
        _load_full_weights(module, weights_path)

    manifest = {
        "format_version": 1,
        "medclip_version": __version__,
        "image_encoder": image_spec.name,
        "text_encoder": (text_spec or image_spec).name,
        "pretrained": pretrained,
        "text_pretrained": text_tag if text_spec is not None else pretrained,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "provenance": provenance or {"source": "built"},
    }
    return _wrap(module, model_cfg, preprocess, manifest)


def _text_tag(text_spec: EncoderSpec | None, image_tag: str | None, requested: str | None) -> str | None:
    if text_spec is None:
        return image_tag
    if requested != AUTO:
        return normalize_pretrained(requested)
    if "pretrained" in text_spec.tags():  # Hugging Face towers come pretrained
        return "pretrained"
    if image_tag and image_tag in text_spec.tags():
        return image_tag
    return None


def _model_config(image: TowerConfig, text: TowerConfig, image_size: int | None) -> dict:
    if image.vision_cfg is None or text.text_cfg is None:
        raise ModelError("the chosen encoders do not provide both an image and a text tower")
    vision_cfg = copy.deepcopy(image.vision_cfg)
    if image_size is not None:
        if image_size <= 0:
            raise UsageError(f"--image-size must be a positive number of pixels, not {image_size}")
        vision_cfg["image_size"] = image_size
    cfg = {
        "embed_dim": image.embed_dim or text.embed_dim or 512,
        "vision_cfg": vision_cfg,
        "text_cfg": copy.deepcopy(text.text_cfg),
        "quick_gelu": bool(image.quick_gelu or text.quick_gelu),
    }
    if "hf_model_name" in cfg["text_cfg"]:
        cfg["custom_text"] = True
    return cfg


def _image_size(model_cfg: dict) -> int:
    size = model_cfg["vision_cfg"].get("image_size", 224)
    return int(size if isinstance(size, int) else size[0])


def instantiate(model_cfg: dict, *, init_weights: bool = True):
    """The open_clip module for a model config (open_clip's own classes, so bundles stay portable).

    ``init_weights=False`` skips the random initialisation of torch.nn.init (seconds for a
    ViT-B/32 on a CPU) when every tensor is about to be replaced by loaded weights.
    """
    import torch
    from open_clip.model import CLIP, CustomTextCLIP

    cfg = copy.deepcopy(model_cfg)
    custom_text = cfg.pop("custom_text", False) or "hf_model_name" in cfg["text_cfg"]
    cls = CustomTextCLIP if custom_text else CLIP
    if custom_text:
        _quiet_transformers()
    try:
        with contextlib.nullcontext() if init_weights else _skip_init():
            module = cls(**cfg)
    except (TypeError, KeyError, ValueError, RuntimeError, OSError) as exc:
        raise ModelError(f"cannot build the model from its config: {exc}") from exc
    return module.to(torch.float32)


_INIT_FUNCTIONS = (
    "normal_", "trunc_normal_", "uniform_", "constant_", "zeros_", "ones_", "eye_", "orthogonal_",
    "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_",
)


@contextlib.contextmanager
def _skip_init():
    import torch.nn.init as init
    import torch.nn.modules.activation as activation  # MultiheadAttention imports init functions by name

    saved = [(mod, name, getattr(mod, name)) for mod in (init, activation) for name in _INIT_FUNCTIONS if hasattr(mod, name)]
    try:
        for mod, name, _ in saved:
            setattr(mod, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for mod, name, fn in saved:
            setattr(mod, name, fn)


def _quiet_transformers() -> None:
    # transformers prints a load report and progress bars on stdout; our output is ours.
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _wrap(module, model_cfg: dict, preprocess: PreprocessConfig, manifest: dict):
    from medclip_cli.models.clip_model import ClipModel

    return ClipModel(module, make_tokenizer(model_cfg), preprocess, model_cfg, manifest)


def make_tokenizer(model_cfg: dict, tokenizer_dir: str | None = None):
    text_cfg = model_cfg["text_cfg"]
    context_length = text_cfg.get("context_length", 77)
    if "hf_tokenizer_name" in text_cfg or "hf_model_name" in text_cfg:
        from open_clip.tokenizer import HFTokenizer

        name = tokenizer_dir or text_cfg.get("hf_tokenizer_name") or text_cfg["hf_model_name"]
        return HFTokenizer(name, context_length=context_length)
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)


_TEXT_PREFIXES = ("transformer.", "token_embedding.", "positional_embedding", "ln_final.", "text_projection", "text.")


def _load_tower_weights(module, state: dict, which: str) -> None:
    from open_clip.factory import resize_pos_embed, resize_text_pos_embed

    if which == "all":
        load_into(module, state, strict=True, what="pretrained weights")
        return
    if which == "image":
        sub = {k: v for k, v in state.items() if k.startswith("visual.") or k == "logit_scale"}
    else:
        sub = {k: v for k, v in state.items() if k.startswith(_TEXT_PREFIXES) or k == "logit_scale"}
    resize_pos_embed(sub, module)
    resize_text_pos_embed(sub, module)
    load_into(module, sub, strict=False, what=f"pretrained {which} tower weights")


def _load_full_weights(module, path: Path) -> None:
    from open_clip.factory import resize_pos_embed, resize_text_pos_embed

    state = load_state_dict_file(path)
    resize_pos_embed(state, module)
    resize_text_pos_embed(state, module)
    load_into(module, state, strict=True, what=str(path))
