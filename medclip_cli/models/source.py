"""How a command asked for a model, as plain JSON: recorded in embedding files so that a later
command (``medclip search``) can build the same model again and check it is the same."""

from __future__ import annotations

from pathlib import Path


def model_source(
    model_dir: str | Path | None = None,
    encoder: str | None = None,
    text_encoder: str | None = None,
    pretrained: str | None = "none",
    text_pretrained: str | None = "auto",
    image_size: int | None = None,
    seed: int = 0,
) -> dict:
    """``{"model": DIR}`` for a bundle, else the encoder options (and the seed random towers use)."""
    if model_dir is not None:
        return {"model": str(Path(model_dir).absolute())}
    return {
        "encoder": encoder,
        "text_encoder": text_encoder,
        "pretrained": pretrained,
        "text_pretrained": text_pretrained,
        "image_size": image_size,
        "seed": seed,
    }


def source_label(source: dict) -> str:
    if "model" in source:
        return Path(source["model"]).name or source["model"]
    return f"{source.get('encoder')}/{source.get('pretrained') or 'none'}"


def build_from_source(source: dict):
    """The model ``source`` describes (random-init towers seeded as when it was first built)."""
    import torch

    from medclip_cli.models import resolve_model

    if "model" in source:
        return resolve_model(source["model"])
    torch.manual_seed(int(source.get("seed") or 0))
    return resolve_model(
        None,
        source.get("encoder"),
        source.get("text_encoder"),
        source.get("pretrained"),
        source.get("text_pretrained", "auto"),
        source.get("image_size"),
    )


def model_sources(
    model_dirs: list,
    encoders: list[str],
    pretrained: list[str],
    text_encoder: str | None = None,
    seed: int = 0,
) -> list[dict]:
    """One source per ``--model`` and per ``--encoder`` (``--pretrained``: one for all or one each)."""
    from medclip_cli.errors import UsageError

    if not model_dirs and not encoders:
        raise UsageError("no model given", hint="pass --model DIR or --encoder NAME (see `medclip encoders`)")
    if pretrained and not encoders:
        raise UsageError("--pretrained applies to --encoder models; a --model bundle carries its weights")
    if len(pretrained) > 1 and len(pretrained) != len(encoders):
        raise UsageError(
            f"{len(pretrained)} --pretrained values for {len(encoders)} --encoder values",
            hint="give one --pretrained for all encoders, or one per --encoder",
        )
    tags = pretrained if len(pretrained) > 1 else (pretrained or ["none"]) * len(encoders)
    sources = [model_source(path) for path in model_dirs]
    sources += [model_source(None, name, text_encoder, tag, seed=seed) for name, tag in zip(encoders, tags)]
    return sources
