"""Models: encoders assembled into CLIP models, pretrained weights, and bundles."""

from __future__ import annotations

from pathlib import Path

from medclip_cli.errors import UsageError


def resolve_model(
    model_dir: str | Path | None = None,
    encoder: str | None = None,
    text_encoder: str | None = None,
    pretrained: str | None = None,
    text_pretrained: str | None = "auto",
    image_size: int | None = None,
):
    """The model a command was asked for: ``--model REF`` (a bundle or model folder, a TorchScript
    file, a known model name, a hub id: :mod:`medclip_cli.models.sources`) or ``--encoder NAME [...]``."""
    from medclip_cli.models.factory import ModelRequest, build_model
    from medclip_cli.models.sources import hub_name, open_model, registered_model

    if model_dir is not None and encoder is not None:
        raise UsageError("pass either --model DIR or --encoder NAME, not both")
    if model_dir is not None:
        return open_model(model_dir)
    if encoder is None:
        raise UsageError("no model given", hint="pass --model DIR or --encoder NAME (see `medclip encoders`)")
    if hub_name(encoder) is not None or registered_model(encoder) is not None:
        # A complete published model: its own towers, tokenizer and weights.
        if text_encoder is not None:
            raise UsageError(f"--encoder {encoder} is a complete model; it takes no --text-encoder")
        return open_model(encoder)
    return build_model(ModelRequest(encoder, text_encoder, pretrained, text_pretrained, image_size))


__all__ = ["resolve_model"]
