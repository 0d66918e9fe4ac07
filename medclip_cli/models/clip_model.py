"""``ClipModel``: an open_clip model with its tokenizer, preprocessing and manifest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from medclip_cli.data.preprocess import PreprocessConfig


@dataclass
class ClipModel:
    """Everything needed to embed images and texts the way the model was trained to."""

    module: torch.nn.Module  # open_clip CLIP or CustomTextCLIP
    tokenizer: object  # open_clip SimpleTokenizer or HFTokenizer
    preprocess: PreprocessConfig
    model_cfg: dict  # the open_clip model config that rebuilds ``module``
    manifest: dict = field(default_factory=dict)  # encoders, pretrained, provenance

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def context_length(self) -> int:
        return int(self.model_cfg["text_cfg"].get("context_length", 77))

    @property
    def logit_scale(self) -> float:
        """exp(learned logit scale): the temperature the model was trained with."""
        return float(self.module.logit_scale.detach().exp().clamp(max=100).item())

    def to(self, device: str | torch.device) -> "ClipModel":
        self.module.to(device)
        return self

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts))

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.module.encode_image(pixels.to(self.device))
        return F.normalize(features.float(), dim=-1) if normalize else features

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256, normalize: bool = True) -> torch.Tensor:
        chunks = []
        for start in range(0, len(texts), batch_size):
            from medclip_cli.models.text_padding import trim_hf_padding

            tokens = trim_hf_padding(self.module, self.tokenize(texts[start : start + batch_size])).to(self.device)
            features = self.module.encode_text(tokens)
            chunks.append(F.normalize(features.float(), dim=-1) if normalize else features)
        if not chunks:
            return torch.empty(0, self.embed_dim)
        return torch.cat(chunks)

    @property
    def embed_dim(self) -> int:
        return int(self.model_cfg["embed_dim"])
