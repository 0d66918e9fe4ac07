"""Linear layers through oneDNN on the CPU (``cpu_linear``): the same values and gradients as
``F.linear``, only inside the context, only for float32 CPU tensors."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F

from medclip_cli.runtime import kernels
from medclip_cli.runtime.kernels import _onednn_linear_available, cpu_linear

pytestmark = pytest.mark.skipif(not _onednn_linear_available(), reason="this PyTorch has no oneDNN linear")
CPU = torch.device("cpu")


@pytest.mark.parametrize("shape", [(7, 24), (3, 5, 24)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_values_and_gradients_match_f_linear(shape, with_bias):
    torch.manual_seed(0)
    x = torch.randn(*shape, requires_grad=True)
    weight = torch.randn(40, 24, requires_grad=True)
    bias = torch.randn(40, requires_grad=True) if with_bias else None
    probe = torch.randn(*shape[:-1], 40)
    results = []
    for fast in (False, True):
        for t in (x, weight, bias):
            if t is not None:
                t.grad = None
        with cpu_linear(CPU, "fp32") if fast else nullcontext():
            out = F.linear(x, weight, bias)
        (out * probe).sum().backward()
        results.append([out.detach(), x.grad, weight.grad] + ([bias.grad] if with_bias else []))
    for reference, fast in zip(*results):
        torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)


def test_other_precisions_and_devices_are_left_to_pytorch():
    assert type(cpu_linear(CPU, "bf16")).__name__ == "nullcontext"
    assert type(cpu_linear(torch.device("cuda"), "fp32")).__name__ == "nullcontext"
    x = torch.randn(4, 8, dtype=torch.float64)
    w = torch.randn(3, 8, dtype=torch.float64)
    with cpu_linear(CPU, "fp32"):
        out = F.linear(x, w)  # float64: not routed
    assert out.dtype == torch.float64 and torch.equal(out, x @ w.T)


def test_a_training_step_gives_the_same_loss_and_update_with_onednn():
    from benchmarks.step_ceiling import captions_for, make_step_run, memory_batches

    runs, losses = [], []
    for fast in (False, True):
        torch.manual_seed(0)
        run = make_step_run("test-vit", batch_size=8, device="cpu", precision="fp32")
        if not fast:
            run._linear_kernels = nullcontext
        batches = memory_batches(run, captions_for(None, "train", 16), count=2)
        losses.append([float(run.train_step(iter(batches))) for _ in range(2)])
        runs.append(run)
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    for (name, a), b in zip(runs[0].model.module.state_dict().items(), runs[1].model.module.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)


def test_the_engine_step_routes_its_linear_layers_through_onednn(monkeypatch):
    from benchmarks.step_ceiling import captions_for, make_step_run, memory_batches

    calls = []
    original = kernels._OneDNNLinear.apply
    monkeypatch.setattr(kernels._OneDNNLinear, "apply", lambda *a: calls.append(1) or original(*a))
    run = make_step_run("test-vit", batch_size=4, device="cpu", precision="fp32")
    run.train_step(iter(memory_batches(run, captions_for(None, "train", 4), count=1)))
    # Attention in/out projections and MLP layers of both towers' blocks.
    assert len(calls) >= 4 * (len(run.model.module.visual.transformer.resblocks) + len(run.model.module.transformer.resblocks)) - 4
