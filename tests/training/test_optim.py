"""Weight-decay groups, the warmup + cosine schedule, and the trimmed text encoder."""

from __future__ import annotations

import math

import pytest
import torch

from medclip_cli.training.optim import WarmupCosine, build_optimizer, decay_split, warmup_steps_for
from medclip_cli.models.text_padding import token_lengths
from medclip_cli.runtime.forward import _bucket_bounds, encode_text_trimmed
from medclip_cli.errors import UsageError


@pytest.fixture(scope="module")
def tiny_model():
    from medclip_cli.models import resolve_model

    torch.manual_seed(0)
    return resolve_model(encoder="test-vit", pretrained="none")


def test_no_decay_on_norms_biases_embeddings_and_logit_scale(tiny_model):
    decay, no_decay = decay_split(tiny_model.module)
    decayed = {n for n, _ in decay}
    exempt = {n for n, _ in no_decay}
    assert "logit_scale" in exempt
    assert "positional_embedding" in exempt and "token_embedding.weight" in exempt
    assert "visual.class_embedding" in exempt and "visual.positional_embedding" in exempt
    assert "ln_final.weight" in exempt and "ln_final.bias" in exempt
    assert "visual.transformer.resblocks.0.mlp.c_fc.bias" in exempt
    assert "visual.transformer.resblocks.0.mlp.c_fc.weight" in decayed
    assert "visual.conv1.weight" in decayed and "text_projection" in decayed
    assert all(p.ndim >= 2 for _, p in decay)
    total = sum(1 for p in tiny_model.module.parameters() if p.requires_grad)
    assert len(decay) + len(no_decay) == total


def test_optimizer_groups_carry_the_decay(tiny_model):
    opt = build_optimizer(tiny_model.module, lr=1e-3, weight_decay=0.2)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.2, 0.0]


def test_everything_locked_is_a_usage_error(tiny_model):
    module = tiny_model.module
    for p in module.parameters():
        p.requires_grad = False
    try:
        with pytest.raises(UsageError, match="nothing to train"):
            build_optimizer(module, 1e-3, 0.1)
    finally:
        for p in module.parameters():
            p.requires_grad = True


def test_warmup_then_cosine():
    f = WarmupCosine(total_steps=110, warmup_steps=10)
    assert [f(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5)
    assert f(110) == pytest.approx(0.0, abs=1e-12)
    assert all(f(s) >= f(s + 1) for s in range(10, 110))
    assert warmup_steps_for(200, 0.1) == 20 and warmup_steps_for(200, 30) == 30 and warmup_steps_for(10, 50) == 10


def test_bucket_bounds_cover_the_batch_in_order():
    lengths = sorted([5, 6, 7, 30, 31, 77, 77, 8, 9, 10])
    bounds = _bucket_bounds(lengths)
    assert bounds[-1] == len(lengths) and bounds == sorted(bounds) and len(bounds) <= 6
    padded = sum((b - a) * lengths[b - 1] for a, b in zip([0] + bounds[:-1], bounds))
    assert padded < len(lengths) * 77 / 2


@pytest.mark.parametrize("buckets", [True, False], ids=["length-buckets", "one-batch"])
@pytest.mark.parametrize("host_lengths", [True, False])
def test_trimmed_text_encoding_equals_open_clip(tiny_model, buckets, host_lengths):
    captions = ["x", "a chest radiograph", "axial CT of the abdomen with contrast " * 3, "MRI", "ct of the head"]
    tokens = tiny_model.tokenize(captions)
    module = tiny_model.module.eval()
    lengths = token_lengths(module, tokens) if host_lengths else None
    with torch.no_grad():
        ours = encode_text_trimmed(module, tokens, lengths, buckets=buckets)
        theirs = module.encode_text(tokens)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("buckets", [True, False], ids=["length-buckets", "one-batch"])
def test_trimmed_text_encoding_has_the_same_gradient(tiny_model, buckets):
    tokens = tiny_model.tokenize(["short", "a longer caption about a brain MRI", "ct"])
    module = tiny_model.module.train()
    grads = []
    for encode in (lambda m, t: encode_text_trimmed(m, t, buckets=buckets), lambda m, t: m.encode_text(t)):
        module.zero_grad()
        encode(module, tokens).pow(2).sum().backward()
        grads.append(module.transformer.resblocks[0].mlp.c_fc.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-3, atol=1e-4 * float(grads[1].abs().max()))
    assert math.isfinite(float(grads[0].abs().sum())) and grads[0].abs().sum() > 0


def _trainable(module, prefix: str) -> set[str]:
    return {n.split(".")[1] for n, p in module.named_parameters() if n.startswith(prefix) and p.requires_grad}


def test_lock_image_leaves_the_last_resnet_groups_trainable():
    # open_clip's ModifiedResNet cannot be partially locked; medclip unlocks whole stages.
    from medclip_cli.training.config import TrainConfig
    from medclip_cli.training.towers import lock_towers
    from medclip_cli.models import resolve_model

    model = resolve_model(encoder="test-resnet", pretrained="none")
    lock_towers(model.module, TrainConfig(output=None, data=None, lock_image=True, lock_image_unlocked=2))
    assert _trainable(model.module, "visual.") == {"layer4", "attnpool"}
    assert any(p.requires_grad for n, p in model.module.named_parameters() if n.startswith("transformer."))


def test_lock_image_and_text_freeze_the_towers(tiny_model):
    from medclip_cli.training.config import TrainConfig
    from medclip_cli.training.towers import lock_towers

    module = tiny_model.module
    try:
        lock_towers(module, TrainConfig(output=None, data=None, lock_image=True, lock_text=True, lock_text_unlocked=1))
        assert not _trainable(module, "visual.")
        text = {n for n, p in module.named_parameters() if p.requires_grad and not n.startswith("visual.")}
        assert text and all(
            n.startswith("transformer.resblocks.1.")
            or n.startswith("ln_final")
            or n in ("text_projection", "logit_scale")
            for n in text
        )
    finally:
        for p in module.parameters():
            p.requires_grad = True


def test_pooled_image_encoding_equals_open_clip(tiny_model):
    from medclip_cli.runtime.forward import encode_image_pooled

    module = tiny_model.module.train()
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    grads = []
    outs = []
    for encode in (encode_image_pooled, lambda m, x: m.encode_image(x)):
        module.zero_grad()
        out = encode(module, images)
        out.pow(2).sum().backward()
        outs.append(out.detach())
        grads.append(
            [
                module.visual.transformer.resblocks[-1].attn.in_proj_weight.grad.clone(),
                module.visual.conv1.weight.grad.clone(),
            ]
        )
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(*grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-4 * float(theirs.abs().max()))
