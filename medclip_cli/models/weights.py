"""Weights files: reading a state dict safely and loading it into a module with clear errors."""

from __future__ import annotations

import warnings
from pathlib import Path

from medclip_cli.errors import ModelError

#: The weights file inside a model bundle folder (open_clip ``local-dir:`` reads the same name).
WEIGHTS_NAME = "model.safetensors"


def load_state_dict_file(path: Path) -> dict:
    """A state dict from ``.safetensors`` or a ``.pt``/``.bin`` (never unpickling arbitrary objects)."""
    import pickle

    import torch

    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise ModelError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            with warnings.catch_warnings():
                # torch warns about the pickle protocol of files it is about to refuse anyway.
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _looks_like_torch_file(path):
            raise ModelError(
                f"{path}: not a weights file",
                hint="pass a .safetensors file, a PyTorch .pt/.pth/.bin state dict, or a model bundle folder",
            ) from exc
        raise ModelError(
            f"{path}: refused to load: the file holds Python objects, not only tensors",
            hint="only load weights you trust; convert them to .safetensors",
        ) from exc
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise ModelError(f"{path}: corrupt or unreadable weights file ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path}: does not contain a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _looks_like_torch_file(path: Path) -> bool:
    """A zip archive (torch.save's format) or a raw pickle stream."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def load_into(module, state: dict, *, strict: bool, what: str, assign: bool = False) -> None:
    """Load ``state`` into ``module``; tensors that do not fit are one :class:`ModelError` naming ``what``."""
    own = module.state_dict()
    mismatched = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if mismatched:
        k = mismatched[0]
        raise ModelError(
            f"{what}: do not match this architecture ({len(mismatched)} tensors differ, e.g. {k}: "
            f"{tuple(state[k].shape)} vs {tuple(own[k].shape)})",
            hint="check --encoder/--text-encoder against the weights",
        )
    missing, unexpected = module.load_state_dict(state, strict=False, assign=assign)
    missing = [k for k in missing if not k.endswith("attn_mask")]
    if strict and (missing or unexpected):
        example = (missing or unexpected)[0]
        raise ModelError(
            f"{what}: do not match this architecture ({len(missing)} missing, "
            f"{len(unexpected)} unexpected tensors, e.g. {example})",
            hint="check --encoder/--text-encoder against the weights",
        )
    if not strict and not any(k in own for k in state):
        raise ModelError(f"{what}: none of the tensors fit this architecture")
