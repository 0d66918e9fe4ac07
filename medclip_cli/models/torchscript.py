"""OpenAI's TorchScript CLIP archives (``ViT-B-32.pt``, ``RN50.pt``: what OpenAI's ``clip`` package
caches under ``~/.cache/clip``) as medclip models.

The archive's tensors are read with ``torch.jit.load`` (TorchScript, not a pickle of Python
objects) and rebuilt into open_clip's ``CLIP`` with QuickGELU, the architecture read off the
tensor shapes exactly as open_clip's ``build_model_from_openai_state_dict`` does, so the model
equals ``open_clip.load_openai_model(path)`` and its bundles load in open_clip.
"""

from __future__ import annotations

from pathlib import Path

from medclip_cli.errors import ModelError
from medclip_cli.models.weights import is_torchscript_archive, torchscript_state_dict

__all__ = ["is_torchscript_archive", "load_openai_torchscript", "openai_model_config", "torchscript_state_dict"]


def openai_model_config(state: dict) -> dict:
    """open_clip's model config for an OpenAI CLIP state dict (ViT or ModifiedResNet)."""
    if "visual.proj" in state:
        width = state["visual.conv1.weight"].shape[0]
        patch = state["visual.conv1.weight"].shape[-1]
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        layers = len([k for k in state if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")])
        vision_cfg = {"layers": layers, "width": int(width), "patch_size": int(patch), "image_size": int(patch * grid)}
    elif "visual.attnpool.positional_embedding" in state:
        counts = [len({k.split(".")[2] for k in state if k.startswith(f"visual.layer{b}.")}) for b in (1, 2, 3, 4)]
        output = round((state["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
        vision_cfg = {
            "layers": counts,
            "width": int(state["visual.layer1.0.conv1.weight"].shape[0]),
            "image_size": int(output * 32),
        }
    else:
        raise ModelError("not an OpenAI CLIP archive: it has neither a ViT nor a ResNet image tower")
    width = int(state["ln_final.weight"].shape[0])
    text_cfg = {
        "context_length": int(state["positional_embedding"].shape[0]),
        "vocab_size": int(state["token_embedding.weight"].shape[0]),
        "width": width,
        "heads": width // 64,
        "layers": len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")}),
    }
    return {
        "embed_dim": int(state["text_projection"].shape[1]),
        "vision_cfg": vision_cfg,
        "text_cfg": text_cfg,
        "quick_gelu": True,  # OpenAI's models were trained with QuickGELU
    }


def load_openai_torchscript(path: str | Path, provenance: dict | None = None):
    """A :class:`~medclip_cli.models.clip_model.ClipModel` from an OpenAI TorchScript ``.pt`` file."""
    from medclip_cli import __version__
    from medclip_cli.data.preprocess import PreprocessConfig
    from medclip_cli.models.clip_model import ClipModel
    from medclip_cli.models.factory import instantiate, make_tokenizer
    from medclip_cli.models.weights import load_into

    path = Path(path)
    state = torchscript_state_dict(path)
    try:
        model_cfg = openai_model_config(state)
    except KeyError as exc:
        raise ModelError(f"{path}: not an OpenAI CLIP archive (no tensor {exc})") from exc
    module = instantiate(model_cfg, init_weights=False)
    load_into(module, state, strict=True, what=str(path))
    module.eval()
    preprocess = PreprocessConfig(image_size=model_cfg["vision_cfg"]["image_size"])  # OpenAI mean/std, bicubic
    manifest = {
        "format_version": 1,
        "medclip_version": __version__,
        "image_encoder": f"openai-torchscript:{path.name}",
        "text_encoder": f"openai-torchscript:{path.name}",
        "pretrained": str(path),
        "text_pretrained": str(path),
        "provenance": provenance or {"source": str(path), "format": "OpenAI TorchScript"},
    }
    return ClipModel(module, make_tokenizer(model_cfg), preprocess, model_cfg, manifest)
