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
    """The model a command was asked for: ``--model DIR`` or ``--encoder NAME [...]``."""
    from medclip_cli.models.bundle import load_bundle
    from medclip_cli.models.factory import ModelRequest, build_model

    if model_dir is not None and encoder is not None:
        raise UsageError("pass either --model DIR or --encoder NAME, not both")
    if model_dir is not None:
        return load_bundle(model_dir)
    if encoder is None:
        raise UsageError("no model given", hint="pass --model DIR or --encoder NAME (see `medclip encoders`)")
    return build_model(ModelRequest(encoder, text_encoder, pretrained, text_pretrained, image_size))


__all__ = ["resolve_model"]
