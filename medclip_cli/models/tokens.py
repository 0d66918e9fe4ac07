"""Counting a caption's tokens the way a text tower will, without building the model."""

from __future__ import annotations

from typing import Callable

from medclip_cli.encoders import DEFAULT_TEXT_ENCODER, get_encoder, text_tower_of
from medclip_cli.errors import ModelError


def caption_token_counter(encoder: str = DEFAULT_TEXT_ENCODER) -> tuple[Callable[[str], int], int, str]:
    """(tokens in a caption, context length, text tower name) for ``encoder``'s text tower.

    Builds only the tokenizer from the encoder's config, never the model.
    """
    from medclip_cli.models.factory import make_tokenizer

    spec = text_tower_of(get_encoder(encoder))
    text_cfg = spec.build(None).text_cfg
    if not text_cfg:
        raise ModelError(f"encoder {spec.name!r} has no text tower")
    try:
        tokenizer = make_tokenizer({"text_cfg": text_cfg})
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load the tokenizer of {spec.name!r} ({type(exc).__name__}: {str(exc).splitlines()[0]})",
            hint="check the name, or connect once so Hugging Face can cache it",
        ) from exc
    context = int(text_cfg.get("context_length", 77))
    if hasattr(tokenizer, "encode"):  # open_clip's BPE tokenizer: start and end tokens come on top
        return (lambda text: len(tokenizer.encode(text)) + 2), context, spec.name
    hf = tokenizer.tokenizer
    return (lambda text: len(hf(tokenizer.clean_fn(text))["input_ids"])), context, spec.name
