"""Image <-> caption retrieval metrics, correct when several images share one caption."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def caption_groups(captions: Sequence[str]) -> tuple[list[str], list[int]]:
    """Unique captions (first-seen order) and, per image, the index of its caption."""
    unique: dict[str, int] = {}
    owner = [unique.setdefault(c, len(unique)) for c in captions]
    return list(unique), owner


@torch.no_grad()
def retrieval_ranks(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    caption_of_image: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """0-based ranks: of each image's caption among all captions (image→text), and, for each
    caption, of the best-ranked image that has it among all images (text→image).

    A rank is the number of strictly better candidates, so ties count in the query's favour.
    """
    owner = torch.as_tensor(list(caption_of_image), dtype=torch.long, device=image_features.device)
    sims = image_features.float() @ text_features.to(image_features.device).float().T  # [images, captions]
    n_img, n_txt = sims.shape
    correct_i2t = sims[torch.arange(n_img), owner]
    rank_i2t = (sims > correct_i2t[:, None]).sum(dim=1)
    positives = torch.zeros(n_img, n_txt, dtype=torch.bool, device=sims.device)
    positives[torch.arange(n_img), owner] = True
    sims_t = sims.T  # [captions, images]
    best_positive = sims_t.masked_fill(~positives.T, float("-inf")).max(dim=1).values
    rank_t2i = (sims_t.masked_fill(positives.T, float("-inf")) > best_positive[:, None]).sum(dim=1)
    return rank_i2t.cpu(), rank_t2i.cpu()


def retrieval_metrics(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    caption_of_image: Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Recall@k and median rank both ways.

    ``text_features`` holds one row per *unique* caption; ``caption_of_image[i]`` is image i's.
    image→text: the rank of image i's caption among all captions. text→image: for each caption,
    the best rank of any image that has it, so every image sharing a caption counts as a hit
    (CLIP_benchmark instead repeats a shared caption once per image and counts the other images
    as misses; on data without shared captions the two agree).
    """
    rank_i2t, rank_t2i = retrieval_ranks(image_features, text_features, caption_of_image)
    metrics: dict[str, float] = {}
    for k in ks:
        metrics[f"image_to_text_R@{k}"] = float((rank_i2t < k).float().mean())
        metrics[f"text_to_image_R@{k}"] = float((rank_t2i < k).float().mean())
    # numpy's median (the mean of the two middle ranks for an even count); torch.median would
    # return the lower one.
    metrics["image_to_text_median_rank"] = float(np.median(rank_i2t.numpy() + 1))
    metrics["text_to_image_median_rank"] = float(np.median(rank_t2i.numpy() + 1))
    return metrics
