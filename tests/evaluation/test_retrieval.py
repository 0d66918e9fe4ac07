"""Retrieval ranks on a similarity matrix written by hand (one-hot image features pick its columns)."""

from __future__ import annotations

import pytest
import torch

from medclip_cli.evaluation.retrieval import caption_groups, retrieval_metrics, retrieval_ranks

# sims[image, caption]; images 1 and 2 share caption 1.
SIMS = torch.tensor(
    [
        [0.9, 0.1, 0.2],
        [0.3, 0.5, 0.8],
        [0.1, 0.7, 0.2],
        [0.4, 0.6, 0.3],
    ]
)
OWNER = [0, 1, 1, 2]


def _features():
    return torch.eye(4), SIMS.T.contiguous()  # image_features @ text_features.T == SIMS


def test_ranks_both_ways_with_a_shared_caption():
    i2t, t2i = retrieval_ranks(*_features(), OWNER)
    assert i2t.tolist() == [0, 1, 0, 2]
    # caption 1 is found through image 2 (0.7), the better of its two images; image 0's 0.1 and image 3's 0.6 are below
    assert t2i.tolist() == [0, 0, 1]


def test_recall_and_median_rank():
    m = retrieval_metrics(*_features(), OWNER, ks=(1, 2, 5))
    assert m["image_to_text_R@1"] == 0.5
    assert m["image_to_text_R@2"] == 0.75
    assert m["image_to_text_R@5"] == 1.0
    assert m["text_to_image_R@1"] == pytest.approx(2 / 3)
    assert m["text_to_image_R@2"] == 1.0
    assert m["image_to_text_median_rank"] == 1.5  # median of 1, 2, 1, 3 (not the lower middle, 1)
    assert m["text_to_image_median_rank"] == 1.0


def test_ties_count_in_the_querys_favour():
    i2t, t2i = retrieval_ranks(torch.eye(2), torch.tensor([[1.0, 1.0], [1.0, 1.0]]), [0, 1])
    assert i2t.tolist() == [0, 0] and t2i.tolist() == [0, 0]


def test_caption_groups_keep_first_seen_order():
    assert caption_groups(["x", "y", "x", "z"]) == (["x", "y", "z"], [0, 1, 0, 2])
