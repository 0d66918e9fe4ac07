"""Image <-> caption retrieval metrics, correct when several images share one caption."""

from __future__ import annotations

from typing import Sequence

import torch


def caption_groups(captions: Sequence[str]) -> tuple[list[str], list[int]]:
    """Unique captions (first-seen order) and, per image, the index of its caption."""
    unique: dict[str, int] = {}
    owner = [unique.setdefault(c, len(unique)) for c in captions]
    return list(unique), owner


@torch.no_grad()
def retrieval_metrics(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    caption_of_image: Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Recall@k and median rank both ways.

    ``text_features`` holds one row per *unique* caption; ``caption_of_image[i]`` is image i's.
    image→text: the rank of image i's caption among all captions. text→image: for each caption,
    the best rank of any image that has it (CLIP_benchmark's convention for shared captions).
    """
    owner = torch.as_tensor(list(caption_of_image), dtype=torch.long, device=image_features.device)
    sims = image_features.float() @ text_features.float().T  # [images, captions]
    n_img, n_txt = sims.shape
    # Rank = number of strictly better candidates (ties count in the query's favour).
    correct_i2t = sims[torch.arange(n_img), owner]
    rank_i2t = (sims > correct_i2t[:, None]).sum(dim=1)
    positives = torch.zeros(n_img, n_txt, dtype=torch.bool, device=sims.device)
    positives[torch.arange(n_img), owner] = True
    sims_t = sims.T  # [captions, images]
    best_positive = sims_t.masked_fill(~positives.T, float("-inf")).max(dim=1).values
    rank_t2i = (sims_t.masked_fill(positives.T, float("-inf")) > best_positive[:, None]).sum(dim=1)
    metrics: dict[str, float] = {}
    for k in ks:
        metrics[f"image_to_text_R@{k}"] = float((rank_i2t < k).float().mean())
        metrics[f"text_to_image_R@{k}"] = float((rank_t2i < k).float().mean())
    metrics["image_to_text_median_rank"] = float(rank_i2t.float().add(1).median())
    metrics["text_to_image_median_rank"] = float(rank_t2i.float().add(1).median())
    return metrics
