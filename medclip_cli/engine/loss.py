"""The study's weighted contrastive loss: ``λ·CE(image→text) + (1−λ)·CE(text→image)``.

λ = 0.5 is CLIP's symmetric loss. Logits are ``s · X · Yᵀ`` over L2-normalised features with
``s = exp(logit_scale)`` clamped to at most 100, as in CLIP.

Targets. Without soft targets, image i's only positive is caption i (and caption i's only positive
is image i): cross-entropy against ``arange``. With soft targets, every pair (i, j) whose *group*
is equal is a positive, and the target row of image i is uniform over those j::

    T[i, j] = [g_i == g_j] / #{k : g_k == g_i}

The loss is then the cross-entropy against that distribution (the same matrix serves
text→image, since group equality is symmetric). Groups are caption identity (two images with the
same caption are not each other's negatives) or, when a label field is named, the label value
(every same-class pair is a positive). With all groups distinct this equals the hard loss.

Note on caption groups: two pairs with one caption have identical text features, so the hard loss
already pulls each image towards that one text vector; the soft loss has the same value and
gradient then. Caption soft targets matter only where identical captions can encode differently
(dropout, augmentation of text); label soft targets (``--soft-label``) change the objective.

Under ``torchrun`` each rank scores its own B rows against the features of the whole global batch
(N = B·world), gathered with gradients flowing back into each rank's local part, so the loss is the
global batch's loss (open_clip's ``local_loss`` + ``gather_with_grad``).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

MAX_LOGIT_SCALE = 100.0


def check_loss_weight(weight: float) -> float:
    from medclip_cli.errors import UsageError

    if not (isinstance(weight, (int, float)) and 0.0 <= float(weight) <= 1.0) or math.isnan(float(weight)):
        raise UsageError(f"--loss-weight must be between 0 and 1 (0.5 is CLIP's symmetric loss), not {weight}")
    return float(weight)


def soft_targets(row_groups: torch.Tensor, column_groups: torch.Tensor) -> torch.Tensor:
    """``T[i, j] = [row_i == col_j] / #{k : row_i == col_k}`` (rows sum to 1)."""
    same = (row_groups[:, None] == column_groups[None, :]).float()
    return same / same.sum(dim=1, keepdim=True).clamp_min(1.0)


def weighted_clip_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    weight: float = 0.5,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """The weighted loss of one batch (single process). ``groups`` (one id per pair) enables soft targets.

    Features need not be normalised; they are L2-normalised here.
    """
    image_features = F.normalize(image_features.float(), dim=-1)
    text_features = F.normalize(text_features.float(), dim=-1)
    scale = logit_scale.float().exp().clamp(max=MAX_LOGIT_SCALE)
    logits_per_image = scale * image_features @ text_features.T
    n = logits_per_image.shape[0]
    if groups is None:
        targets = torch.arange(n, device=logits_per_image.device)
        return _weighted(logits_per_image, logits_per_image.T, targets, targets, weight)
    t = soft_targets(groups, groups)
    return _weighted(logits_per_image, logits_per_image.T, t, t, weight)


def _weighted(logits_i2t, logits_t2i, targets_i2t, targets_t2i, weight: float) -> torch.Tensor:
    # Skip a zero-weighted direction entirely: 0 · inf would make the loss NaN.
    loss = logits_i2t.new_zeros(())
    if weight > 0:
        loss = loss + weight * F.cross_entropy(logits_i2t, targets_i2t)
    if weight < 1:
        loss = loss + (1.0 - weight) * F.cross_entropy(logits_t2i, targets_t2i)
    return loss


class WeightedClipLoss(nn.Module):
    """:func:`weighted_clip_loss` over the global batch when running under ``torchrun``.

    ``forward`` returns this rank's share: the mean over its own rows. DDP averages gradients over
    ranks, which makes the update that of the global batch's mean loss.
    """

    def __init__(self, weight: float = 0.5, soft_targets: bool = False, rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        self.weight = check_loss_weight(weight)
        self.soft_targets = soft_targets
        self.rank = rank
        self.world_size = world_size

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        groups: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.world_size == 1:
            return weighted_clip_loss(
                image_features, text_features, logit_scale, self.weight, groups if self.soft_targets else None
            )
        from medclip_cli.engine.distributed import gather_no_grad, gather_with_grad

        image_features = F.normalize(image_features.float(), dim=-1)
        text_features = F.normalize(text_features.float(), dim=-1)
        all_images = gather_with_grad(image_features)
        all_texts = gather_with_grad(text_features)
        scale = logit_scale.float().exp().clamp(max=MAX_LOGIT_SCALE)
        logits_i2t = scale * image_features @ all_texts.T  # [B, N]
        logits_t2i = scale * text_features @ all_images.T  # [B, N]
        b = image_features.shape[0]
        if self.soft_targets and groups is not None:
            targets = soft_targets(groups, gather_no_grad(groups))
        else:
            targets = torch.arange(b, device=logits_i2t.device) + b * self.rank
        return _weighted(logits_i2t, logits_t2i, targets, targets, self.weight)
