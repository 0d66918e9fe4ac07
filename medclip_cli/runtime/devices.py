"""Choosing the torch device."""

from __future__ import annotations

from medclip_cli.errors import UsageError


def resolve_device(name: str = "auto"):
    """``auto`` picks CUDA, then MPS, then the CPU; an unavailable device is a usage error."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UsageError(f"--device {name!r} is not a device name (use cpu, cuda, cuda:N, mps or auto)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine", hint="use --device cpu")
    return device
