"""open_clip architectures with their own text towers (the study's encoders, and ``open_clip:*``).

Registration reads open_clip's JSON model configs from disk without importing open_clip (and so
torch): listing encoders or rejecting a misspelt name stays fast.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
from functools import lru_cache
from pathlib import Path

from medclip_cli import hookimpl
from medclip_cli.encoders import EncoderNamespace, EncoderSpec, TowerConfig

#: The study's encoders, by the short names users type.
STUDY_ENCODERS = {
    "rn50": "RN50",
    "rn101": "RN101",
    "rn50x4": "RN50x4",
    "vit-b-32": "ViT-B-32",
    "vit-b-16": "ViT-B-16",
    "vit-l-14": "ViT-L-14",
}


@lru_cache(maxsize=1)
def _config_files() -> dict[str, Path]:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return {}
    folder = Path(next(iter(spec.submodule_search_locations))) / "model_configs"
    return {p.stem: p for p in folder.glob("*.json")}


def model_config(arch: str) -> dict | None:
    """open_clip's config for ``arch`` read from its JSON file (no import of open_clip)."""
    path = _config_files().get(arch)
    if path is None:
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def open_clip_tags(arch: str) -> tuple[str, ...]:
    """The pretrained tags open_clip knows for architecture ``arch``."""
    import open_clip

    return tuple(open_clip.list_pretrained_tags_by_model(arch))


def open_clip_spec(name: str, arch: str) -> EncoderSpec | None:
    """An encoder for open_clip architecture ``arch``, or None if open_clip has no such model."""
    cfg = model_config(arch)
    if cfg is None or "multimodal_cfg" in cfg or "vision_cfg" not in cfg:
        return None
    vision = cfg["vision_cfg"]
    family = "resnet" if isinstance(vision.get("layers"), (list, tuple)) else "vit"
    if "timm_model_name" in vision:
        family = vision["timm_model_name"].split("_")[0]
    image_size = vision.get("image_size", 224)
    return EncoderSpec(
        name=name,
        kind="clip",
        family=family,
        build=lambda tag: open_clip_tower(arch, tag),
        embed_dim=cfg.get("embed_dim"),
        image_size=image_size if isinstance(image_size, int) else image_size[0],
        context_length=cfg.get("text_cfg", {}).get("context_length", 77),
        description=f"open_clip {arch}: image and text towers",
        list_tags=lambda: open_clip_tags(arch),
    )


def open_clip_tower(arch: str, tag: str | None) -> TowerConfig:
    """Both towers of open_clip architecture ``arch``, with pretrained tag ``tag``'s weights and preprocessing."""
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from open_clip.pretrained import get_pretrained_cfg

    from medclip_cli.errors import UsageError
    from medclip_cli.models.pretrained import fetch_open_clip_weights

    cfg = open_clip.get_model_config(arch)
    preprocess = {
        "mean": list(OPENAI_DATASET_MEAN),
        "std": list(OPENAI_DATASET_STD),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }
    quick_gelu = bool(cfg.get("quick_gelu", False))
    weights = None
    if tag:
        tag_cfg = get_pretrained_cfg(arch, tag)
        if not tag_cfg:
            known = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
            raise UsageError(
                f"--pretrained {tag!r} is not a pretrained tag of {arch} (known tags: {known})",
                hint="or pass a weights file, a model bundle, or none",
            )
        # The tag's weights decide the activation: OpenAI's were trained with QuickGELU.
        quick_gelu = bool(tag_cfg.get("quick_gelu", quick_gelu))
        preprocess.update({k: tag_cfg[k] for k in preprocess if k in tag_cfg})
        weights = lambda: fetch_open_clip_weights(arch, tag)  # noqa: E731
    return TowerConfig(
        vision_cfg=cfg["vision_cfg"],
        text_cfg=cfg["text_cfg"],
        embed_dim=cfg["embed_dim"],
        quick_gelu=quick_gelu,
        preprocess=preprocess,
        weights=weights,
    )


@hookimpl
def register_encoders(register):
    for name, arch in STUDY_ENCODERS.items():
        spec = open_clip_spec(name, arch)
        if spec is not None:
            register(spec)


def _list(pattern: str) -> list[str]:
    return sorted((m for m in _config_files() if fnmatch.fnmatch(m.lower(), pattern.lower())), key=str.lower)


def _resolve(name: str) -> EncoderSpec | None:
    match = next((m for m in _config_files() if m.lower() == name.lower()), None)
    return open_clip_spec(f"open_clip:{match}", match) if match else None


@hookimpl
def register_encoder_namespaces(register):
    register(
        EncoderNamespace(
            prefix="open_clip",
            kind="clip",
            description="any open_clip architecture, e.g. open_clip:ViT-B-32-quickgelu",
            list_names=_list,
            resolve=_resolve,
        )
    )
