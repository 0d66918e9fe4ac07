"""Kernel-level choices for a step, none of which changes the numbers beyond rounding: autocast,
float32 linear layers through oneDNN on the CPU, compiled transformer blocks and NHWC convolutional
towers on a GPU."""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode


def compile_blocks(module: nn.Module) -> int:
    """``torch.compile`` the repeated parts of a CLIP model in place; returns how many were compiled.

    Each open_clip transformer block (image and text towers) is compiled on its own, with dynamic
    shapes, since text batches are trimmed to a different length each step; a convolutional image
    tower (no such blocks) is compiled whole. ``nn.Module.compile`` keeps parameter names, so
    checkpoints and bundles are the same as without it. The last block's pooled shortcut
    (:func:`_blocks_then_pooled`) calls the block's parts directly and stays eager.
    """
    blocks = [m for m in module.modules() if type(m).__name__ == "ResidualAttentionBlock"]
    for block in blocks:
        block.compile(dynamic=True)
    visual = getattr(module, "visual", None)
    if visual is not None and not any(b in blocks for b in visual.modules()):
        visual.compile()
        return len(blocks) + 1
    return len(blocks)


def prefer_channels_last(module: nn.Module, device: torch.device) -> bool:
    """On CUDA, NHWC weights for a convolutional image tower: cuDNN's tensor-core convolutions work
    NHWC, and the batch already is (``normalize_batch`` permutes the NHWC uint8 pixels, keeping
    their layout), so no transposes are left around the convolutions. A ViT, whose only
    convolution is the patch embedding, is left alone. Returns whether the tower was converted."""
    visual = getattr(module, "visual", None)
    if device.type != "cuda" or visual is None or sum(isinstance(m, nn.Conv2d) for m in visual.modules()) < 2:
        return False
    visual.to(memory_format=torch.channels_last)
    return True


def autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


class _OneDNNLinear(torch.autograd.Function):
    """``F.linear`` with the forward and input-gradient products in oneDNN (the weight gradient in MKL)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        ctx.save_for_backward(flat, weight)
        ctx.shape, ctx.has_bias = shape, bias is not None
        out = torch.ops.mkldnn._linear_pointwise(flat, weight, bias, "none", [], "")
        return out.view(*shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        flat, weight = ctx.saved_tensors
        g = grad.reshape(-1, weight.shape[0])
        linear = torch.ops.mkldnn._linear_pointwise
        grad_x = linear(g, weight.t(), None, "none", [], "").view(ctx.shape) if ctx.needs_input_grad[0] else None
        # The weight gradient's long inner dimension suits MKL better (benchmarks/cpu_linear.py).
        grad_w = g.t() @ flat if ctx.needs_input_grad[1] else None
        grad_b = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


class _CpuLinear(TorchFunctionMode):
    """Routes float32 CPU ``F.linear`` calls (``nn.Linear``, attention projections) to oneDNN."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.linear:
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            if x.dtype == torch.float32 and x.device.type == "cpu" and weight.dim() == 2 and x.dim() >= 2:
                return _OneDNNLinear.apply(x, weight, bias)
        return func(*args, **kwargs)


def cpu_linear(device: torch.device, precision: str):
    """On the CPU at fp32, a context in which linear layers run through oneDNN, forward and backward.

    PyTorch sends a float32 ``F.linear`` to MKL's sgemm; on this project's AMD EPYC machines
    oneDNN (which PyTorch ships, and uses for bf16 and convolutions) runs the forward and
    input-gradient products of a ViT-B/32 layer 7-15 % faster, a training step about 4 % faster
    (``benchmarks/cpu_linear.py``). Float32 in, float32 out, same arithmetic, rounding order
    aside. Elsewhere (a GPU, reduced precision, a PyTorch without the op) it does nothing.
    """
    if device.type != "cpu" or precision != "fp32" or not _onednn_linear_available():
        return nullcontext()
    return _CpuLinear()


def _onednn_linear_available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False
