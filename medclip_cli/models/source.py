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
    """``{"model": REF}`` for ``--model`` (a folder or file as an absolute path, a model name or hub
    id as given), else the encoder options (and the seed random towers use)."""
    if model_dir is not None:
        path = Path(model_dir).expanduser()
        return {"model": str(path.absolute()) if path.exists() else str(model_dir)}
    return {
        "encoder": encoder,
        "text_encoder": text_encoder,
        "pretrained": pretrained,
        "text_pretrained": text_pretrained,
        "image_size": image_size,
        "seed": seed,
    }


def one_model_source(
    model_dir: str | Path | None,
    encoder: str | None,
    text_encoder: str | None = None,
    pretrained: str | None = None,
    text_pretrained: str | None = "auto",
    image_size: int | None = None,
    seed: int = 0,
) -> dict | None:
    """The source of a command that takes one model (``embed``, ``search``): ``--model`` or
    ``--encoder`` (with its canonical weights unless ``--pretrained`` says otherwise), not both;
    None when neither is given."""
    from medclip_cli.errors import UsageError
    from medclip_cli.models.defaults import default_pretrained

    if model_dir is not None and encoder is not None:
        raise UsageError("pass either --model DIR or --encoder NAME, not both")
    if model_dir is None and encoder is None:
        return None
    if encoder is not None:  # random weights only when asked for: --pretrained none
        pretrained = default_pretrained(encoder, pretrained)
    return model_source(model_dir, encoder, text_encoder, pretrained, text_pretrained, image_size, seed)


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
    *,
    default_model: bool = False,
) -> list[dict]:
    """One source per ``--model`` and per ``--encoder`` (``--pretrained``: one for all or one each;
    an encoder without it gets its canonical weights). No model at all is a usage error, or with
    ``default_model`` the study's model (ViT-B/32 with the OpenAI weights)."""
    from medclip_cli.errors import UsageError
    from medclip_cli.models.defaults import DEFAULT_ENCODER, default_pretrained

    if not model_dirs and not encoders:
        if not default_model:
            raise UsageError("no model given", hint="pass --model DIR or --encoder NAME (see `medclip encoders`)")
        encoders = [DEFAULT_ENCODER]
    if pretrained and not encoders:
        raise UsageError("--pretrained applies to --encoder models; a --model bundle carries its weights")
    if len(pretrained) > 1 and len(pretrained) != len(encoders):
        raise UsageError(
            f"{len(pretrained)} --pretrained values for {len(encoders)} --encoder values",
            hint="give one --pretrained for all encoders, or one per --encoder",
        )
    given = pretrained if len(pretrained) > 1 else (pretrained or [None]) * len(encoders)
    sources = [model_source(path) for path in model_dirs]
    sources += [
        model_source(None, name, text_encoder, default_pretrained(name, tag), seed=seed) for name, tag in zip(encoders, given)
    ]
    return sources
