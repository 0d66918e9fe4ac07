"""Which weights a command uses when the user names none.

- No model at all (``classify``, ``evaluate``): the study's model, ViT-B/32 with the OpenAI
  weights, downloaded once by open_clip and cached.
- An encoder without ``--pretrained``: its canonical pretrained tag (``openai`` for the CLIP
  models, ``pretrained`` for Hugging Face text towers, ``imagenet`` for timm image towers).
  Random weights are only ever chosen by saying ``--pretrained none``.
"""

from __future__ import annotations

DEFAULT_ENCODER = "vit-b-32"
DEFAULT_PRETRAINED = "openai"
#: The first of these an encoder accepts is its canonical tag.
CANONICAL_TAGS = ("openai", "pretrained", "imagenet")
#: How to pre-fetch the default weights where there is network (issue 14's command).
FETCH_DEFAULT = f"medclip weights fetch {DEFAULT_ENCODER}:{DEFAULT_PRETRAINED}"


def canonical_tag(encoder: str) -> str | None:
    """The tag ``--pretrained`` defaults to for ``encoder``; None when it has no pretrained weights."""
    from medclip_cli.encoders import get_encoder

    tags = get_encoder(encoder).tags()
    return next((t for t in CANONICAL_TAGS if t in tags), None)


def default_pretrained(encoder: str, pretrained: str | None) -> str:
    """``pretrained`` as given, else the encoder's canonical tag, else ``none`` (test encoders)."""
    if pretrained is not None:
        return pretrained
    return canonical_tag(encoder) or "none"
