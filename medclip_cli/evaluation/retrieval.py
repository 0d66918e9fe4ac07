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


# Similarities are scored this many at a time (16 Mi floats, 64 MiB): the whole [images, captions]
# matrix of an 80,000-pair split would be 25 GiB, and its masks as much again.
BLOCK_ELEMENTS = 1 << 24


@torch.no_grad()
def retrieval_ranks(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    caption_of_image: Sequence[int],
    *,
    block_elements: int = BLOCK_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """0-based ranks: of each image's caption among all captions (image→text), and, for each
    caption, of the best-ranked image that has it among all images (text→image).

    A rank is the number of strictly better candidates, so ties count in the query's favour.
    The similarities are scored a block of queries at a time (``block_elements`` at most), so
    memory stays flat in the split's size; each rank compares values of one block's product.
    """
    device = image_features.device
    images = image_features.float()
    texts = text_features.to(device).float()
    owner = torch.as_tensor(list(caption_of_image), dtype=torch.long, device=device)
    n_img, n_txt = len(images), len(texts)
    rank_i2t = torch.empty(n_img, dtype=torch.long, device=device)
    step = max(1, block_elements // max(1, n_txt))
    for a in range(0, n_img, step):
        sims = images[a : a + step] @ texts.T  # [block of images, captions]
        correct = sims.gather(1, owner[a : a + step, None])
        rank_i2t[a : a + step] = (sims > correct).sum(dim=1)
    rank_t2i = torch.empty(n_txt, dtype=torch.long, device=device)
    step = max(1, block_elements // max(1, n_img))
    for a in range(0, n_txt, step):
        sims = texts[a : a + step] @ images.T  # [block of captions, images]
        positive = owner[None, :] == torch.arange(a, a + len(sims), device=device)[:, None]
        best_positive = sims.masked_fill(~positive, float("-inf")).max(dim=1, keepdim=True).values
        rank_t2i[a : a + step] = (sims.masked_fill_(positive, float("-inf")) > best_positive).sum(dim=1)
    return rank_i2t.cpu(), rank_t2i.cpu()


def retrieval_metrics(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    caption_of_image: Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
    *,
    ranks: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, float]:
    """Recall@k and median rank both ways.

    ``text_features`` holds one row per *unique* caption; ``caption_of_image[i]`` is image i's.
    image→text: the rank of image i's caption among all captions. text→image: for each caption,
    the best rank of any image that has it, so every image sharing a caption counts as a hit
    (CLIP_benchmark instead repeats a shared caption once per image and counts the other images
    as misses; on data without shared captions the two agree). ``ranks``: :func:`retrieval_ranks`
    of the same arguments, when the caller has them already.
    """
    rank_i2t, rank_t2i = ranks if ranks is not None else retrieval_ranks(image_features, text_features, caption_of_image)
    metrics: dict[str, float] = {}
    for k in ks:
        metrics[f"image_to_text_R@{k}"] = float((rank_i2t < k).float().mean())
        metrics[f"text_to_image_R@{k}"] = float((rank_t2i < k).float().mean())
    # numpy's median (the mean of the two middle ranks for an even count); torch.median would
    # return the lower one.
    metrics["image_to_text_median_rank"] = float(np.median(rank_i2t.numpy() + 1))
    metrics["text_to_image_median_rank"] = float(np.median(rank_t2i.numpy() + 1))
    return metrics
