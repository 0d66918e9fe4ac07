"""Resizing and normalising images exactly like open_clip's eval transform, without torchvision.

The pipeline is split at the uint8 stage (:func:`resize_to_uint8`) so the decode cache stores
exactly what the model would otherwise see.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_INTERPOLATIONS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}
RESIZE_MODES = ("shortest", "longest", "squash")


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes model input (open_clip's ``PreprocessCfg`` fields)."""

    image_size: int = 224
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"  # shortest: resize + centre crop; longest: pad; squash: stretch
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {self.resize_mode!r}")

    def geometry_key(self) -> str:
        """Identifies the uint8 output (size, interpolation, resize mode): the decode cache key."""
        raw = json.dumps([self.image_size, self.interpolation, self.resize_mode])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def to_open_clip(self) -> dict:
        """The ``preprocess_cfg`` block of an open_clip config."""
        return {
            "size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "resize_mode": self.resize_mode,
        }

    @classmethod
    def from_open_clip(cls, cfg: dict, image_size: int) -> "PreprocessConfig":
        size = cfg.get("size", image_size)
        return cls(
            image_size=int(size if isinstance(size, int) else size[0]),
            mean=tuple(cfg.get("mean", OPENAI_MEAN)),
            std=tuple(cfg.get("std", OPENAI_STD)),
            interpolation=cfg.get("interpolation", "bicubic"),
            resize_mode=cfg.get("resize_mode", "shortest"),
        )

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "extra"}


def _resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    # torchvision's rule for Resize(int): the shorter side becomes `size`, the other truncates.
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def resize_to_uint8(image: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """Resize and crop/pad an RGB image to ``cfg.image_size`` square; returns HxWx3 uint8."""
    size = cfg.image_size
    resample = _INTERPOLATIONS[cfg.interpolation]
    width, height = image.size
    if cfg.resize_mode == "squash":
        out = image.resize((size, size), resample)
    elif cfg.resize_mode == "longest":
        scale = size / max(width, height)
        new = (max(1, round(width * scale)), max(1, round(height * scale)))
        resized = image.resize(new, resample)
        out = Image.new("RGB", (size, size), (0, 0, 0))
        out.paste(resized, ((size - new[0]) // 2, (size - new[1]) // 2))
    else:
        new_w, new_h = _resized_size(width, height, size)
        if (new_w, new_h) != (width, height):
            image = image.resize((new_w, new_h), resample)
        # torchvision CenterCrop's offsets: int(round((dim - size) / 2.0)).
        left = int(round((new_w - size) / 2.0))
        top = int(round((new_h - size) / 2.0))
        out = image.crop((left, top, left + size, top + size))
    return np.array(out.convert("RGB"), dtype=np.uint8)


_CHANNEL_STATS: dict = {}


def _channel_stats(cfg: PreprocessConfig, device):
    """Mean and std as [1, 3, 1, 1] tensors on ``device``, made once: building them from Python
    numbers is a blocking copy, which would stall a GPU step every batch."""
    import torch

    key = (tuple(cfg.mean), tuple(cfg.std), str(device))
    stats = _CHANNEL_STATS.get(key)
    if stats is None:
        stats = _CHANNEL_STATS[key] = (
            torch.tensor(cfg.mean, device=device).view(1, 3, 1, 1),
            torch.tensor(cfg.std, device=device).view(1, 3, 1, 1),
        )
    return stats


def normalize_batch(batch_uint8, cfg: PreprocessConfig, device=None, dtype=None):
    """NHWC uint8 (numpy or tensor) -> normalised NCHW float tensor on ``device``."""
    import torch

    tensor = torch.as_tensor(batch_uint8)
    if device is not None:
        tensor = tensor.to(device, non_blocking=True)
    tensor = tensor.permute(0, 3, 1, 2).float().div_(255.0)
    mean, std = _channel_stats(cfg, tensor.device)
    tensor = (tensor - mean) / std
    return tensor.to(dtype) if dtype is not None else tensor
