"""Padding of Hugging Face text towers: columns after a batch's longest text change nothing."""

from __future__ import annotations

import torch
import torch.nn as nn


def trim_hf_padding(module: nn.Module, tokens: torch.Tensor, lengths: list[int] | None = None) -> torch.Tensor:
    """``tokens`` without the padding columns after the batch's longest text, for a Hugging Face
    text tower (which masks padding out of attention and mean pooling, so those columns change
    nothing); unchanged for any other tower. ``lengths``: :func:`token_lengths` of ``tokens``,
    known on the host, so that tokens on a GPU need not be read back."""
    pad_id = hf_pad_id(module)
    if pad_id is None or not tokens.numel():
        return tokens
    width = max(1, max(lengths) if lengths is not None else int((tokens != pad_id).sum(dim=1).max()))
    return tokens[:, :width]


def token_lengths(module: nn.Module, tokens: torch.Tensor) -> list[int] | None:
    """The non-padding length of each row of ``tokens`` (on the host): what text trimming needs to
    plan its buckets. Taken from the batch before it goes to the device, so the step never waits
    for the device to answer; None for cached text features."""
    if tokens.is_floating_point():
        return None
    pad = hf_pad_id(module)
    return (tokens != (0 if pad is None else pad)).sum(dim=1).tolist()


def hf_pad_id(module: nn.Module) -> int | None:
    """The pad token id of a Hugging Face text tower whose pooler ignores padding, else None."""
    text = getattr(module, "text", None)
    config = getattr(text, "config", None)
    pooler = type(getattr(text, "pooler", None)).__name__
    # Only poolers that ignore padding: a CLS or last-token pooler would read another position.
    if config is None or pooler not in ("MeanPooler", "ClsPooler") or getattr(text, "output_tokens", False):
        return None
    pad = getattr(config, "pad_token_id", None)
    return int(pad) if pad is not None else None
