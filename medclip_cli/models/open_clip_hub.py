"""open_clip models as published on the hub (BiomedCLIP, QuiltNet): ``open_clip_config.json`` and
``open_clip_pytorch_model.bin`` / ``open_clip_model.safetensors`` in one folder.

A Hugging Face text tower (BiomedCLIP's PubMedBERT) is named in the config by its own hub id; its
``config.json`` and tokenizer files come from that repository (the hub cache, or a download of
those files only: the tower's weights are in the open_clip file). The model built is open_clip's
own ``CLIP`` / ``CustomTextCLIP``, equal to ``open_clip.create_model('hf-hub:...')``.
"""

from __future__ import annotations

import copy
from pathlib import Path

from medclip_cli.errors import ModelError

WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors")


def is_open_clip_folder(folder: Path) -> bool:
    from medclip_cli.models.bundle import CONFIG_NAME

    return (folder / CONFIG_NAME).is_file() and any((folder / n).is_file() for n in WEIGHT_NAMES)


def weights_file(folder: Path) -> Path:
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise ModelError(f"{folder}: no open_clip weights ({', '.join(WEIGHT_NAMES)})")


def load_open_clip_folder(folder: str | Path, provenance: dict | None = None):
    """A :class:`~medclip_cli.models.clip_model.ClipModel` from an open_clip hub folder."""
    from medclip_cli import __version__
    from medclip_cli.data.preprocess import PreprocessConfig
    from medclip_cli.models.bundle import read_bundle_config
    from medclip_cli.models.clip_model import ClipModel
    from medclip_cli.models.factory import instantiate
    from medclip_cli.models.weights import load_into, load_state_dict_file

    folder = Path(folder)
    config = read_bundle_config(folder)
    model_cfg = copy.deepcopy(config["model_cfg"])
    build_cfg = copy.deepcopy(model_cfg)
    provenance = dict(provenance or {"source": str(folder)})
    tokenizer_source = None
    text_cfg = build_cfg.get("text_cfg", {})
    if "hf_model_name" in text_cfg:
        tower = text_tower_folder(text_cfg["hf_model_name"], folder)
        tokenizer_source = str(tower.path)
        # Config and tokenizer from the tower's folder; its weights are in the open_clip file.
        text_cfg.update(hf_model_name=str(tower.path), hf_tokenizer_name=str(tower.path), hf_model_pretrained=False)
        if tower.revision:
            provenance.update(text_hub_id=tower.repo_id, text_hub_revision=tower.revision)
    if "timm_model_name" in build_cfg.get("vision_cfg", {}):
        build_cfg["vision_cfg"]["timm_model_pretrained"] = False
    weights = weights_file(folder)
    module = instantiate(build_cfg, init_weights=False)
    load_into(module, load_state_dict_file(weights), strict=True, what=str(weights), assign=True)
    module.eval()
    size = build_cfg["vision_cfg"].get("image_size", 224)
    preprocess = PreprocessConfig.from_open_clip(config.get("preprocess_cfg", {}), size if isinstance(size, int) else size[0])
    manifest = config.get("medclip") or {
        "format_version": 1,
        "medclip_version": __version__,
        "image_encoder": provenance.get("hub_id", str(folder)),
        "text_encoder": provenance.get("hub_id", str(folder)),
        "pretrained": provenance.get("hub_id", str(folder)),
        "text_pretrained": provenance.get("hub_id", str(folder)),
    }
    manifest = {**manifest, "provenance": {**manifest.get("provenance", {}), **provenance}}
    return ClipModel(module, open_clip_tokenizer(model_cfg, tokenizer_source), preprocess, model_cfg, manifest)


def text_tower_folder(name: str, model_folder: Path):
    """The folder with a Hugging Face text tower's config and tokenizer: a local path, the model
    folder itself when it carries them (a medclip bundle), or the tower's hub repository."""
    from medclip_cli.models.hub import HubFolder, resolve_repo

    if Path(name).is_dir():
        return HubFolder(name, Path(name), "")
    if (model_folder / "config.json").is_file() and (model_folder / "tokenizer_config.json").is_file():
        return HubFolder(name, model_folder, "")
    return resolve_repo(name, what=f"the text tower of {model_folder.name}", configs_only=True)


def open_clip_tokenizer(model_cfg: dict, tokenizer_source: str | None = None):
    """The tokenizer ``open_clip.get_tokenizer`` makes for this config (HF or CLIP's BPE)."""
    text_cfg = model_cfg.get("text_cfg", {})
    context_length = text_cfg.get("context_length", 77)
    kwargs = dict(text_cfg.get("tokenizer_kwargs", {}))
    if text_cfg.get("hf_tokenizer_name"):
        from open_clip.tokenizer import HFTokenizer

        return HFTokenizer(
            tokenizer_source or text_cfg["hf_tokenizer_name"],
            context_length=context_length,
            tokenizer_mode=text_cfg.get("tokenizer_mode"),
            **kwargs,
        )
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length, **kwargs)
