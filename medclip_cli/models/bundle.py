"""Model bundles: one folder per model that medclip and open_clip (``local-dir:``) both load.

Layout::

    DIR/model.safetensors        the full state dict
    DIR/open_clip_config.json    {"model_cfg": ..., "preprocess_cfg": ..., "medclip": manifest}
    DIR/tokenizer files, config.json   only for Hugging Face text towers
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from medclip_cli.data.preprocess import PreprocessConfig
from medclip_cli.errors import ModelError
from medclip_cli.files import read_regular
from medclip_cli.models.model_folder import new_model_folder, saved_manifest
from medclip_cli.models.portable import portable_hf_name
from medclip_cli.models.weights import WEIGHTS_NAME, load_into, load_state_dict_file

CONFIG_NAME = "open_clip_config.json"


def save_bundle(model, directory: str | Path, provenance: dict | None = None) -> Path:
    """Write ``model`` to ``directory`` atomically: a complete new bundle or the old one untouched."""
    from safetensors.torch import save_model

    if model.model_cfg.get("format") == "transformers":  # saved back in its own library's format
        from medclip_cli.models.hf_clip import save_hf_dual_encoder

        return save_hf_dual_encoder(model, directory, provenance)

    directory = Path(directory)
    model_cfg = _portable_cfg(model.model_cfg)
    config = {"model_cfg": model_cfg, "preprocess_cfg": model.preprocess.to_open_clip(), "medclip": saved_manifest(model, provenance)}
    with new_model_folder(directory, "model bundle") as tmp:
        save_model(model.module, str(tmp / WEIGHTS_NAME))
        config["medclip"]["weights_sha256"] = _sha256(tmp / WEIGHTS_NAME)  # checked when loaded
        if "hf_model_name" in model_cfg["text_cfg"]:
            model.module.text.transformer.config.save_pretrained(tmp)
            model.tokenizer.tokenizer.save_pretrained(tmp)
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return directory


def _portable_cfg(model_cfg: dict) -> dict:
    cfg = copy.deepcopy(model_cfg)
    # The weights are in the bundle: never fetch tower weights again when it is loaded.
    if "timm_model_name" in cfg["vision_cfg"]:
        cfg["vision_cfg"]["timm_model_pretrained"] = False
    if "hf_model_name" in cfg["text_cfg"]:
        cfg["text_cfg"]["hf_model_pretrained"] = False
        # Never a local path (a site-packages folder on this machine): the tower's hub id. The
        # bundle holds its config and tokenizer, which load_bundle reads instead.
        for key in ("hf_model_name", "hf_tokenizer_name"):
            if key in cfg["text_cfg"]:
                cfg["text_cfg"][key] = portable_hf_name(str(cfg["text_cfg"][key]))
    return cfg


def read_bundle_config(directory: str | Path) -> dict:
    directory = Path(directory)
    if not directory.exists():
        raise ModelError(f"{directory}: no such model folder", hint="pass a folder written by medclip finetune")
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise ModelError(
            f"{directory}: not a model bundle (no {CONFIG_NAME})",
            hint="pass a folder written by medclip finetune, or use --encoder NAME",
        )
    try:
        config = json.loads(read_regular(config_path, ModelError, "bundle config", limit=16 << 20).decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # not UTF-8, malformed, too deep, 5,000-digit numbers
        raise ModelError(f"{config_path}: not valid JSON ({type(exc).__name__})") from exc
    if not isinstance(config, dict) or not isinstance(config.get("model_cfg"), dict):
        raise ModelError(f"{config_path}: has no 'model_cfg' object")
    return config


def load_bundle(directory: str | Path):
    """Load a bundle written by :func:`save_bundle` (or any open_clip ``local-dir`` folder)."""
    from medclip_cli.models.clip_model import ClipModel
    from medclip_cli.models.factory import instantiate, make_tokenizer

    directory = Path(directory)
    if not (directory / CONFIG_NAME).is_file():
        from medclip_cli.models.hf_clip import is_hf_dual_encoder, load_hf_dual_encoder

        if is_hf_dual_encoder(directory):
            return load_hf_dual_encoder(directory)
    config = read_bundle_config(directory)
    model_cfg = copy.deepcopy(config["model_cfg"])
    text_cfg = model_cfg.get("text_cfg", {})
    tokenizer_dir = None
    if "hf_model_name" in text_cfg:
        # The bundle carries the HF config and tokenizer: build from them, not from the hub.
        build_cfg = copy.deepcopy(model_cfg)
        build_cfg["text_cfg"].update(hf_model_name=str(directory), hf_model_pretrained=False)
        tokenizer_dir = str(directory)
    else:
        build_cfg = model_cfg
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        found = sorted(directory.glob("*.safetensors"))
        if not found:
            raise ModelError(f"{directory}: no {WEIGHTS_NAME} in the model bundle")
        weights = found[0]
    manifest = config.get("medclip", {"provenance": {"source": "open_clip local-dir"}})
    preprocess = _preprocess(directory, config, build_cfg)  # before the weights: a bad setting fails fast
    expected = manifest.get("weights_sha256") if isinstance(manifest, dict) else None
    if isinstance(expected, str) and weights.name == WEIGHTS_NAME and _sha256(weights) != expected:
        raise ModelError(
            f"{weights}: does not match the checksum its bundle recorded (corrupt or changed since it was saved)",
            hint="use another copy of the bundle",
        )
    state = load_state_dict_file(weights)
    bad = next((k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())), None)
    if bad is not None:
        raise ModelError(f"{weights}: tensor {bad} holds NaN or infinite values; the model cannot give numbers")
    # Every tensor comes from the file: skip random init and adopt the loaded tensors (no copy).
    module = instantiate(build_cfg, init_weights=False)
    load_into(module, state, strict=True, what=str(weights), assign=True)
    module.eval()
    return ClipModel(module, make_tokenizer(model_cfg, tokenizer_dir), preprocess, model_cfg, manifest)


def _preprocess(directory: Path, config: dict, build_cfg: dict) -> PreprocessConfig:
    """The bundle's preprocessing, refused by name when it cannot give finite inputs."""
    import math

    where = directory / CONFIG_NAME
    image_size = build_cfg.get("vision_cfg", {}).get("image_size", 224)
    try:
        preprocess = PreprocessConfig.from_open_clip(
            config.get("preprocess_cfg", {}), image_size if isinstance(image_size, int) else image_size[0]
        )
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ModelError(f"{where}: preprocess_cfg: {exc}") from exc
    values = [*preprocess.mean, *preprocess.std]
    finite = all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
    if len(preprocess.mean) != 3 or len(preprocess.std) != 3 or not finite or min(preprocess.std) <= 0:
        raise ModelError(
            f"{where}: preprocess_cfg mean {list(preprocess.mean)} / std {list(preprocess.std)}: "
            "the std must be positive and every value finite"
        )
    if not isinstance(preprocess.image_size, int) or preprocess.image_size < 1:
        raise ModelError(f"{where}: image size {preprocess.image_size!r} is not a positive whole number")
    return preprocess


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
