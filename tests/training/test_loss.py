"""The weighted contrastive loss against a computation by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medclip_cli.training.loss import WeightedClipLoss, image_targets, positives, soft_targets, weighted_clip_loss
from medclip_cli.errors import UsageError


def _features(n=5, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)


def _by_hand(images, texts, scale, lam, groups=None, targets=None):
    """``targets``: (image→text, text→image) target weights as nested lists (default: uniform
    over the pairs with an equal group)."""
    x = images.numpy() / np.linalg.norm(images.numpy(), axis=1, keepdims=True)
    y = texts.numpy() / np.linalg.norm(texts.numpy(), axis=1, keepdims=True)
    n = len(x)
    s = min(math.exp(scale), 100.0)
    groups = list(range(n)) if groups is None else groups
    if targets is None:
        uniform = [[(groups[i] == groups[j]) / groups.count(groups[i]) for j in range(n)] for i in range(n)]
        targets = uniform, uniform

    def ce(rows, weights):  # mean over rows of -sum_j t_ij log softmax_j
        total = 0.0
        for i in range(n):
            logits = [s * float(np.dot(*rows(i, j))) for j in range(n)]
            m = max(logits)
            log_z = m + math.log(sum(math.exp(v - m) for v in logits))
            total += -sum(weights[i][j] * (logits[j] - log_z) for j in range(n))
        return total / n

    i2t = ce(lambda i, j: (x[i], y[j]), targets[0])
    t2i = ce(lambda i, j: (y[i], x[j]), targets[1])
    return lam * i2t + (1 - lam) * t2i


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 1.0])
def test_weighted_loss_matches_hand_computation(lam):
    images, texts = _features()
    scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64)
    got = float(weighted_clip_loss(images, texts, scale, lam))
    assert got == pytest.approx(_by_hand(images, texts, float(scale), lam), rel=1e-6)


def test_directions_differ_so_the_weight_matters():
    images, texts = _features(seed=3)
    scale = torch.tensor(2.0)
    i2t = float(weighted_clip_loss(images, texts, scale, 1.0))
    t2i = float(weighted_clip_loss(images, texts, scale, 0.0))
    assert i2t != pytest.approx(t2i, rel=1e-3)
    assert float(weighted_clip_loss(images, texts, scale, 0.3)) == pytest.approx(0.3 * i2t + 0.7 * t2i, rel=1e-6)


def test_half_weight_is_open_clip_cliploss():
    from open_clip.loss import ClipLoss

    images, texts = _features(n=7, seed=1)
    images, texts = [torch.nn.functional.normalize(t, dim=-1) for t in (images, texts)]
    scale = torch.tensor(math.log(20.0), dtype=torch.float64)
    ours = weighted_clip_loss(images, texts, scale, 0.5)
    theirs = ClipLoss()(images, texts, scale.exp())
    assert float(ours) == pytest.approx(float(theirs), rel=1e-6)


def test_logit_scale_is_clamped_at_100():
    images, texts = _features(seed=2)
    at_100 = weighted_clip_loss(images, texts, torch.tensor(math.log(100.0)), 0.5)
    above = weighted_clip_loss(images, texts, torch.tensor(math.log(1000.0)), 0.5)
    assert float(above) == pytest.approx(float(at_100), rel=1e-6)


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_soft_targets_match_hand_computation(lam):
    images, texts = _features(n=6, seed=4)
    groups = [0, 1, 0, 2, 1, 0]  # e.g. three images share one caption
    scale = torch.tensor(1.5, dtype=torch.float64)
    got = float(weighted_clip_loss(images, texts, scale, lam, torch.tensor(groups)))
    assert got == pytest.approx(_by_hand(images, texts, 1.5, lam, groups), rel=1e-6)


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_label_prompts_are_positives_of_every_image_with_their_class(lam):
    # Pairs: caption group, then modality and region keys of the image; texts 0, 2 and 3 are
    # label prompts (keys 10 = CT, 20 = chest, 11 = MR), the others captions.
    images, texts = _features(n=6, seed=3)
    image_keys = [[0, 10, 20], [1, 11, 21], [0, 11, 20], [2, 11, -1], [1, 10, 21], [3, 10, 20]]
    text_keys = [10, 1, 20, 11, 1, 3]
    groups = torch.tensor([[t, *k] for t, k in zip(text_keys, image_keys)])
    scale = torch.tensor(0.7, dtype=torch.float64)
    got = float(weighted_clip_loss(images, texts, scale, lam, groups))
    # Image i: each of its keys that some text carries gets an equal share, split over those texts.
    i2t = []
    for keys in image_keys:
        present = [k for k in keys if k in text_keys]
        i2t.append([(t in present) / (len(present) * text_keys.count(t)) for t in text_keys])
    # Text j: uniform over the images that have its key.
    t2i = [[(t in keys) / sum(t in k for k in image_keys) for keys in image_keys] for t in text_keys]
    assert got == pytest.approx(_by_hand(images, texts, 0.7, lam, targets=(i2t, t2i)), rel=1e-6)
    torch.testing.assert_close(image_targets(groups, groups), torch.tensor(i2t, dtype=torch.float32))
    # Image 1 (MR): half to its caption (texts 1 and 4 say it), half to the one MR prompt (text 3);
    # a plain uniform row would give the prompt a third.
    assert image_targets(groups, groups)[1].tolist() == [0.0, 0.25, 0.0, 0.5, 0.25, 0.0]
    # Image 5 (CT, chest) has its own caption and two prompts from other images (a CT prompt and
    # a chest prompt) as positives; image 1 (MR) its caption, image 4's identical one and the MR
    # prompt; image 3 (MR, no region) the MR prompt only, which is its own text.
    same = positives(groups, groups)
    assert [row.nonzero().flatten().tolist() for row in same] == [[0, 2], [1, 3, 4], [2, 3], [3], [0, 1, 4], [0, 2, 5]]
    # Caption groups alone (1-D) are the same relation as their two-column form.
    caption = torch.tensor([0, 1, 0, 2, 1, 0])
    assert torch.equal(positives(caption, caption), positives(torch.stack([caption, caption], 1), torch.stack([caption, caption], 1)))


def test_soft_target_matrix_rows_are_uniform_over_the_group():
    t = soft_targets(torch.tensor([5, 7, 5]), torch.tensor([5, 7, 5]))
    expected = torch.tensor([[0.5, 0, 0.5], [0, 1, 0], [0.5, 0, 0.5]])
    assert torch.equal(t, expected)


def test_soft_targets_with_distinct_groups_equal_hard_targets():
    images, texts = _features(seed=5)
    scale = torch.tensor(2.0, dtype=torch.float64)
    hard = weighted_clip_loss(images, texts, scale, 0.3)
    soft = weighted_clip_loss(images, texts, scale, 0.3, torch.arange(5))
    assert float(soft) == pytest.approx(float(hard), rel=1e-6)


def test_same_label_pairs_count_as_positives_with_soft_targets():
    # Images 0 and 1 share a label but each sits closest to the other's caption: hard targets
    # punish that, label soft targets do not.
    images = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], dtype=torch.float64)
    texts = torch.tensor([[0.8, 0.6], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    scale = torch.tensor(math.log(100.0), dtype=torch.float64)
    hard = float(weighted_clip_loss(images, texts, scale, 0.5))
    soft = float(weighted_clip_loss(images, texts, scale, 0.5, torch.tensor([0, 0, 1])))
    assert soft < hard - 1.0


def test_identical_captions_give_the_same_loss_either_way():
    # Two pairs with one caption have identical text features, so the hard loss already treats
    # them symmetrically: caption soft targets change nothing then (documented in loss.py).
    images, texts = _features(n=4, seed=6)
    texts[1] = texts[0]
    scale = torch.tensor(2.5, dtype=torch.float64)
    hard = float(weighted_clip_loss(images, texts, scale, 0.3))
    soft = float(weighted_clip_loss(images, texts, scale, 0.3, torch.tensor([0, 0, 1, 2])))
    assert soft == pytest.approx(hard, rel=1e-6)


@pytest.mark.parametrize("bad", [-0.1, 1.01, float("nan")])
def test_weight_outside_unit_interval_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="--loss-weight"):
        WeightedClipLoss(weight=bad)


def test_gradient_flows_to_both_towers_and_the_scale():
    images, texts = _features()
    images.requires_grad_(True)
    texts.requires_grad_(True)
    scale = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    WeightedClipLoss(0.3)(images, texts, scale).backward()
    assert images.grad.abs().sum() > 0 and texts.grad.abs().sum() > 0 and scale.grad != 0
