"""The study's weighted contrastive loss: ``λ·CE(image→text) + (1−λ)·CE(text→image)``.

λ = 0.5 is CLIP's symmetric loss. Logits are ``s · X · Yᵀ`` over L2-normalised features with
``s = exp(logit_scale)`` clamped to at most 100, as in CLIP.

Targets. Without soft targets, image i's only positive is caption i (and caption i's only positive
is image i): cross-entropy against ``arange``. With soft targets, every pair (i, j) whose *group*
is equal is a positive, and the target row of image i is uniform over those j::

    T[i, j] = [g_i == g_j] / #{k : g_k == g_i}

The loss is then the cross-entropy against that distribution (the text→image rows are the
columns of the same relation, normalised the same way). Groups are caption identity (two images
with the same caption are not each other's negatives) or, when a label field is named, the label
value (every same-class pair is a positive). With all groups distinct this equals the hard loss.

Label prompts (``--label-text-field``) make the relation one of texts to images, as in UniCL
(Yang et al., 2022, "Unified Contrastive Learning in Image-Text-Label Space"): a prompt naming a
class is a positive of *every* image in the batch that has that class, whatever template worded
it, and a caption stays a positive of its own image and of images with the same caption. Groups
are then a matrix: column 0 is what each pair's text says (a caption group or a label key), the
other columns what its image is (its caption group and one label key per field, ``-1`` for none).
An image's target row gives each of its keys found among the batch's texts the same share, split
evenly over that key's texts::

    T[i, j] = Σ_k [t_j = keys_ik] / (#{k' : keys_ik' ∈ t} · #{l : t_l = keys_ik})

so a field with many classes (few prompts per class in a batch) weighs as much as a two-class one;
plain uniform rows over all positives would let frequent classes take most of the mass. A text's
row is uniform over the images it describes. Two columns that are both the caption group are the
caption-identity case above (1-D groups).

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
    return image_targets(row_groups, column_groups)


def _match(image_groups: torch.Tensor, text_groups: torch.Tensor) -> torch.Tensor:
    """``M[i, k, j]``: text j's key is key k of image i. 1-D groups are one key each (the text's
    and the image's key are the group); ``[N, 1 + K]`` keys as in the module notes."""
    image_keys = image_groups[:, None] if image_groups.dim() == 1 else image_groups[:, 1:]
    text_keys = text_groups if text_groups.dim() == 1 else text_groups[:, 0]
    return image_keys[:, :, None] == text_keys[None, None, :]  # text keys are ≥ 0, padding −1


def positives(image_groups: torch.Tensor, text_groups: torch.Tensor) -> torch.Tensor:
    """``P[i, j]``: text j describes image i."""
    return _match(image_groups, text_groups).any(dim=1)


def image_targets(image_groups: torch.Tensor, text_groups: torch.Tensor) -> torch.Tensor:
    """The image→text target rows (see the module notes): an equal share for each key of the
    image present in the batch, split evenly over that key's texts (1-D groups: uniform over the
    positives)."""
    match = _match(image_groups, text_groups)
    per_key = match.float() / match.sum(dim=2, keepdim=True).clamp_min(1)
    present = match.any(dim=2).sum(dim=1).clamp_min(1)
    return per_key.sum(dim=1) / present[:, None]


def _normalise(same: torch.Tensor) -> torch.Tensor:
    same = same.float()
    return same / same.sum(dim=1, keepdim=True).clamp_min(1.0)


def weighted_clip_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    weight: float = 0.5,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """The weighted loss of one batch (single process). ``groups`` (one id per pair, or the
    ``[N, 1 + K]`` text/image keys of label prompts) enables soft targets.

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
    targets_t2i = _normalise(positives(groups, groups).T)
    return _weighted(logits_per_image, logits_per_image.T, image_targets(groups, groups), targets_t2i, weight)


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
        from medclip_cli.training.distributed import gather_no_grad, gather_with_grad

        image_features = F.normalize(image_features.float(), dim=-1)
        text_features = F.normalize(text_features.float(), dim=-1)
        all_images = gather_with_grad(image_features)
        all_texts = gather_with_grad(text_features)
        scale = logit_scale.float().exp().clamp(max=MAX_LOGIT_SCALE)
        logits_i2t = scale * image_features @ all_texts.T  # [B, N]
        logits_t2i = scale * text_features @ all_images.T  # [B, N]
        b = image_features.shape[0]
        if self.soft_targets and groups is not None:
            all_groups = gather_no_grad(groups)
            targets_i2t = image_targets(groups, all_groups)  # local images × all texts
            targets_t2i = _normalise(positives(all_groups, groups).T)  # local texts × all images
            return _weighted(logits_i2t, logits_t2i, targets_i2t, targets_t2i, self.weight)
        targets = torch.arange(b, device=logits_i2t.device) + b * self.rank
        return _weighted(logits_i2t, logits_t2i, targets, targets, self.weight)
