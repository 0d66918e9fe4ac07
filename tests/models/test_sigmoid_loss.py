"""SigLIP's sigmoid loss equals open_clip's SigLipLoss (an independent implementation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def test_sigmoid_loss_equals_open_clip_siglip_loss():
    from open_clip.loss import SigLipLoss

    from medclip_cli.training.sigmoid_loss import sigmoid_pair_loss

    torch.manual_seed(0)
    images, texts = torch.randn(6, 16), torch.randn(6, 16)
    scale, bias = torch.tensor(2.3), torch.tensor(-4.0)
    ours = sigmoid_pair_loss(images, texts, scale, bias)
    ref = SigLipLoss()(F.normalize(images, dim=-1), F.normalize(texts, dim=-1), scale.exp(), bias)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_same_caption_pairs_are_positives_of_each_other():
    from medclip_cli.training.sigmoid_loss import sigmoid_pair_loss

    torch.manual_seed(1)
    images, texts = torch.randn(3, 8), torch.randn(3, 8)
    texts[2] = texts[0]  # images 0 and 2 share a caption
    scale, bias = torch.tensor(1.0), torch.tensor(-1.0)
    logits = scale.exp() * F.normalize(images, dim=-1) @ F.normalize(texts, dim=-1).T + bias
    labels = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.float) * 2 - 1
    expected = -F.logsigmoid(labels * logits).sum() / 3
    ours = sigmoid_pair_loss(images, texts, scale, bias, groups=torch.tensor([0, 1, 0]))
    assert torch.allclose(ours, expected, atol=1e-6)
