"""Retrieval ranks on a similarity matrix written by hand (one-hot image features pick its columns)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medclip_cli.evaluation.retrieval import caption_groups, retrieval_metrics, retrieval_ranks
from tests.conftest import peak_rss_growth_mib

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


def _brute_force_ranks(images: np.ndarray, texts: np.ndarray, owner: list[int]) -> tuple[list[int], list[int]]:
    """The definitions, one query at a time in float64 (no torch, no blocks)."""
    sims = images.astype(np.float64) @ texts.astype(np.float64).T
    i2t = [int((sims[i] > sims[i, owner[i]]).sum()) for i in range(len(images))]
    t2i = []
    for c in range(len(texts)):
        mine = [j for j, o in enumerate(owner) if o == c]
        best = max(sims[j, c] for j in mine) if mine else -np.inf
        t2i.append(sum(1 for j in range(len(images)) if owner[j] != c and sims[j, c] > best))
    return i2t, t2i


@pytest.mark.parametrize("block_elements", [1, 7, 64, 1 << 24])
def test_blocked_ranks_match_the_definition(block_elements):
    rng = np.random.default_rng(3)
    images = rng.normal(size=(50, 8)).astype(np.float32)
    images[10] = images[3]  # the same image under two captions: an exact tie, counted in the query's favour
    texts = rng.normal(size=(30, 8)).astype(np.float32)
    owner = [k % 30 for k in range(50)]  # 20 captions shared by two images
    i2t, t2i = retrieval_ranks(torch.from_numpy(images), torch.from_numpy(texts), owner, block_elements=block_elements)
    assert (i2t.tolist(), t2i.tolist()) == _brute_force_ranks(images, texts, owner)
    ranks = (i2t, t2i)
    assert retrieval_metrics(torch.from_numpy(images), torch.from_numpy(texts), owner, ranks=ranks) == retrieval_metrics(
        torch.from_numpy(images), torch.from_numpy(texts), owner
    )


def test_memory_stays_flat_in_the_number_of_pairs():
    """16,000 pairs: the whole similarity matrix would be 1 GiB, with its masks over 3 GiB."""
    setup = (
        "import torch\n"
        "from medclip_cli.evaluation.retrieval import retrieval_ranks\n"
        "g = torch.Generator().manual_seed(0)\n"
        "images, texts = torch.randn(16000, 32, generator=g), torch.randn(16000, 32, generator=g)\n"
        "retrieval_ranks(images[:100], texts[:100], list(range(100)))"
    )
    grew = peak_rss_growth_mib(setup, "retrieval_ranks(images, texts, list(range(16000)))")
    assert grew < 512, f"retrieval over 16,000 pairs raised peak RSS by {grew:.0f} MiB"
