"""The training forward, computed for less: the same numbers as open_clip's ``encode_image`` /
``encode_text`` where only the pooled token is used.

Text is run up to the batch's longest caption, on the CPU in length buckets up to each bucket's
longest (causal attention makes the padding after the end token irrelevant); the last transformer block of either tower computes its
queries and MLP for the pooled token alone; a locked Hugging Face text tower can be run once per
text (:func:`frozen_text_pooled`). On a GPU: NHWC convolutional towers and compiled blocks.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

import torch
import torch.nn as nn

from medclip_cli.errors import UsageError
from medclip_cli.models.text_padding import hf_pad_id, trim_hf_padding


def _bucket_bounds(lengths: list[int], max_buckets: int = 6, overhead: int = 12) -> list[int]:
    """Split points of the ascending ``lengths`` into ≤ ``max_buckets`` groups, minimising padded
    tokens plus ``overhead`` per group (the cost of running one more, smaller batch).

    Cuts are only considered where the length changes, so the search stays small for big batches.
    """
    n = len(lengths)
    cuts = [0] + [i for i in range(1, n) if lengths[i] != lengths[i - 1]] + [n]
    m = len(cuts)
    inf = float("inf")
    best = [[inf] * m for _ in range(max_buckets + 1)]
    back = [[0] * m for _ in range(max_buckets + 1)]
    best[0][0] = 0.0
    for k in range(1, max_buckets + 1):
        for j in range(1, m):
            for i in range(j):
                cost = best[k - 1][i] + (cuts[j] - cuts[i]) * lengths[cuts[j] - 1] + overhead
                if cost < best[k][j]:
                    best[k][j], back[k][j] = cost, i
    k = min(range(1, max_buckets + 1), key=lambda kk: best[kk][m - 1])
    bounds, j = [], m - 1
    while j > 0:
        bounds.append(cuts[j])
        j = back[k][j]
        k -= 1
    return sorted(bounds)


def _can_trim_text(module: nn.Module) -> bool:
    # A causal text transformer pooled at the end-of-text token never looks past it, so the
    # padding after the longest caption of a group changes nothing and need not be computed.
    return (
        hasattr(module, "token_embedding")
        and getattr(module, "attn_mask", None) is not None
        and getattr(module, "text_pool_type", None) in ("argmax", "eos")
        and not getattr(module, "text_cls_emb", None)
    )


#: Told how many texts :func:`frozen_text_pooled` embedded: 0 before its first batch, then after
#: each batch. Set by :func:`reporting_text_features` around whoever calls it (the training set's
#: text-feature cache), so a progress bar follows without passing a reporter through the data code.
_text_report: ContextVar[Callable[[int], None] | None] = ContextVar("frozen_text_report", default=None)


@contextmanager
def reporting_text_features(report: Callable[[int], None]) -> Iterator[None]:
    """Within the block, :func:`frozen_text_pooled` calls ``report(0)`` as it starts and
    ``report(n)`` after each batch of ``n`` texts."""
    token = _text_report.set(report)
    try:
        yield
    finally:
        _text_report.reset(token)


def frozen_text_pooled(module: nn.Module, tokens: torch.Tensor, batch: int) -> torch.Tensor:
    """The pooled output (before the projection) of a Hugging Face text tower for every row of
    ``tokens``, in eval mode; texts of similar length are run together to skip padding."""
    report = _text_report.get() or (lambda n: None)
    text = getattr(module, "text", None)
    if hf_pad_id(module) is None or not hasattr(text, "proj"):
        raise UsageError("--text-feature-cache works with Hugging Face text towers only (e.g. minilm-l6)")
    pad = hf_pad_id(module)
    order = torch.argsort((tokens != pad).sum(dim=1), stable=True)
    device = next(text.parameters()).device
    out = torch.empty(len(tokens), text.config.hidden_size)
    was_training = text.training
    text.eval()
    report(0)
    try:
        with torch.no_grad():
            for start in range(0, len(tokens), batch):
                rows = order[start : start + batch]
                part = trim_hf_padding(module, tokens[rows]).to(device).long()  # int32 in a pair set
                mask = (part != pad).long()
                out[rows] = text.pooler(text.transformer(input_ids=part, attention_mask=mask), mask).float().cpu()
                report(len(rows))
    finally:
        text.train(was_training)
    return out


def _pooled_shortcut_ok(transformer: nn.Module) -> bool:
    """Whether :func:`_blocks_then_pooled` reproduces this open_clip ``Transformer`` exactly."""
    blocks = getattr(transformer, "resblocks", None)
    if not blocks or not getattr(transformer, "batch_first", False) or getattr(transformer, "grad_checkpointing", True):
        return False
    last = blocks[-1]
    return (
        type(last).__name__ == "ResidualAttentionBlock"
        and not hasattr(last, "ln_1_kv")
        and isinstance(getattr(last, "attn", None), nn.MultiheadAttention)
        and last.attn.batch_first
    )


def _blocks_then_pooled(transformer: nn.Module, x: torch.Tensor, attn_mask, pick: torch.Tensor) -> torch.Tensor:
    """The output of ``transformer(x)`` at one position per sequence (``pick``), shape [B, D].

    Only the pooled token leaves the model, so the last block computes attention queries, the
    attention output and the MLP for that token alone (keys and values still see every token):
    the same numbers as open_clip's ``ResidualAttentionBlock`` for less work.
    """
    blocks = transformer.resblocks
    for block in blocks[:-1]:
        x = block(x, attn_mask=attn_mask)
    last = blocks[-1]
    rows = torch.arange(x.shape[0], device=x.device)
    normed = last.ln_1(x)
    query = normed[rows, pick].unsqueeze(1)
    mask = None
    if attn_mask is not None:  # each query keeps its own row of the (causal) mask, per head
        mask = attn_mask[pick].unsqueeze(1).repeat_interleave(last.attn.num_heads, dim=0).to(query.dtype)
    attended = last.attn(query, normed, normed, need_weights=False, attn_mask=mask)[0][:, 0]
    h = x[rows, pick] + last.ls_1(attended)
    return h + last.ls_2(last.mlp(last.ln_2(h)))


def encode_image_pooled(module: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``module.encode_image(images)``, with the last ViT block computed for the class token only."""
    visual = module.visual
    if not (
        type(visual).__name__ == "VisionTransformer"
        and visual.attn_pool is None
        and visual.pool_type == "tok"
        and not visual.output_tokens
        and _pooled_shortcut_ok(visual.transformer)
    ):
        return module.encode_image(images)
    x = visual._embeds(images)
    pooled = _blocks_then_pooled(
        visual.transformer, x, None, torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    )
    pooled = visual.ln_post(pooled)  # a per-token norm: the same before or after pooling
    return pooled @ visual.proj if visual.proj is not None else pooled


def encode_text_trimmed(
    module: nn.Module, tokens: torch.Tensor, lengths: list[int] | None = None, buckets: bool | None = None
) -> torch.Tensor:
    """``module.encode_text(tokens)``, computing each length bucket only up to its longest caption.

    ``lengths`` (:func:`token_lengths`, from the host copy of the batch) plans the buckets without
    reading the device; without it they are read from ``tokens``. ``buckets``: split the batch by
    length (default: on the CPU). On a GPU another bucket costs another pass of the whole tower's
    kernel launches, which outweighs the padding it saves (a step there is bound by the host
    queueing kernels), so there the batch runs as one, cut at its longest caption."""
    if hf_pad_id(module) is not None:
        return module.encode_text(trim_hf_padding(module, tokens, lengths))
    if not _can_trim_text(module) or tokens.shape[0] < 2:
        return module.encode_text(tokens)
    from open_clip.transformer import text_global_pool

    buckets = not tokens.is_cuda if buckets is None else buckets
    device_lengths = (tokens != 0).sum(dim=1) if lengths is None or buckets else None
    if not buckets:
        width = max(lengths) if lengths is not None else int(device_lengths.max())
        buckets = [(slice(None), max(1, width))]
    else:
        order = torch.argsort(device_lengths, stable=True)  # the same order as sorting ``lengths``
        sorted_lengths = sorted(lengths) if lengths is not None else device_lengths[order].tolist()
        bounds = _bucket_bounds(sorted_lengths)
        buckets = [(order[start:end], max(1, sorted_lengths[end - 1])) for start, end in zip([0] + bounds, bounds)]
    longest = max(width for _, width in buckets)
    cast_dtype = module.transformer.get_cast_dtype()
    pooled_only = _pooled_shortcut_ok(module.transformer)
    # One embedding lookup for the batch: its backward builds one dense vocabulary-sized
    # gradient instead of one per bucket.
    embedded = module.token_embedding(tokens[:, :longest]).to(cast_dtype)
    out = None
    for rows, width in buckets:
        text = tokens[rows, :width]
        x = embedded[rows, :width] + module.positional_embedding[:width].to(cast_dtype)
        mask = module.attn_mask[:width, :width]
        if pooled_only:
            pick = (
                text.argmax(dim=-1)
                if module.text_pool_type == "argmax"
                else (text == module.text_eos_id).int().argmax(dim=-1)
            )
            x = module.ln_final(_blocks_then_pooled(module.transformer, x, mask, pick))
        else:
            x = module.transformer(x, attn_mask=mask)
            x = module.ln_final(x)
            x = text_global_pool(x, text, module.text_pool_type, eos_token_id=getattr(module, "text_eos_id", None))
        if module.text_projection is not None:
            x = (
                module.text_projection(x)
                if isinstance(module.text_projection, nn.Linear)
                else x @ module.text_projection
            )
        if isinstance(rows, slice):  # the whole batch in its own order
            return x
        if out is None:
            out = x.new_empty((tokens.shape[0], x.shape[1]))
        out[rows] = x
    return out


class ClipStep(nn.Module):
    """The training forward: image features, text features and the logit scale (what DDP wraps)."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, lengths: list[int] | None = None):
        if tokens.is_floating_point():  # cached pooled text features: only the projection runs
            text = self.clip.text.proj(tokens.to(self.clip.logit_scale.dtype))
        else:
            text = encode_text_trimmed(self.clip, tokens, lengths)
        return encode_image_pooled(self.clip, images), text, self.clip.logit_scale
