"""SigLIP's pairwise sigmoid loss, for models that score pairs with a sigmoid and a learned bias.

Zhai et al. 2023 ("Sigmoid Loss for Language Image Pre-Training", eq. 1):
``L = -1/|B| Σ_i Σ_j log σ(z_ij · (t · cos(x_i, y_j) + b))`` with ``z_ij = +1`` when text j describes
image i and ``-1`` otherwise, ``t = exp(logit_scale)`` (not capped, unlike CLIP's) and ``b`` the
model's ``logit_bias``. Captions that are the same text (or, with soft targets, the same key) are
all positives of an image, as in :mod:`medclip_cli.training.loss`. Each pair is its own binary
problem, so there is no image→text / text→image direction for ``--loss-weight`` to weigh: a SigLIP
model trains with this loss whatever that option says (the run's log names the loss).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from medclip_cli.training.loss import positives


def sigmoid_pair_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """The loss of one batch (features need not be normalised)."""
    image_features = F.normalize(image_features.float(), dim=-1)
    text_features = F.normalize(text_features.float(), dim=-1)
    logits = logit_scale.float().exp() * image_features @ text_features.T + logit_bias.float()
    if groups is None:
        labels = torch.eye(len(logits), device=logits.device, dtype=torch.bool)
    else:
        labels = positives(groups, groups)
    signs = labels.float() * 2.0 - 1.0
    return -F.logsigmoid(signs * logits).sum() / image_features.shape[0]


class SigmoidClipLoss(nn.Module):
    """:func:`sigmoid_pair_loss` with the model's own bias; the training loop's loss for SigLIP."""

    name = "sigmoid"

    def __init__(self, logit_bias: torch.Tensor, soft_targets: bool = False, world_size: int = 1) -> None:
        super().__init__()
        if world_size != 1:
            from medclip_cli.errors import UsageError

            raise UsageError("fine-tuning a sigmoid (SigLIP) model runs on one process; drop --nproc/torchrun")
        self.logit_bias = logit_bias  # the model's parameter: trained with the rest
        self.soft_targets = soft_targets

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        groups: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return sigmoid_pair_loss(
            image_features, text_features, logit_scale, self.logit_bias, groups if self.soft_targets else None
        )


def make_loss(model, weight: float, soft_targets: bool, rank: int, world_size: int) -> nn.Module:
    """The loss a model trains with: its own scoring's (sigmoid for SigLIP, else weighted CLIP)."""
    from medclip_cli.training.loss import WeightedClipLoss

    bias = getattr(model.module, "logit_bias", None)
    if isinstance(bias, torch.Tensor):
        return SigmoidClipLoss(bias, soft_targets, world_size)
    return WeightedClipLoss(weight, soft_targets, rank, world_size)
