"""The encoder registry: named image, text and full-CLIP towers contributed by plugins."""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal

from medclip_cli.errors import EncoderNotFoundError
from medclip_cli.plugins import collect, did_you_mean

EncoderKind = Literal["clip", "image", "text"]

#: The text tower an image-only encoder is paired with when no --text-encoder is given.
DEFAULT_TEXT_ENCODER = "clip-text"


@dataclass
class TowerConfig:
    """What an encoder contributes to an open_clip model config."""

    vision_cfg: dict | None = None  # open_clip CLIPVisionCfg fields
    text_cfg: dict | None = None  # open_clip CLIPTextCfg fields
    embed_dim: int | None = None  # joint embedding size (full CLIP encoders)
    quick_gelu: bool = False  # OpenAI weights were trained with QuickGELU
    preprocess: dict = field(default_factory=dict)  # mean/std/interpolation/resize_mode
    # Returns a local file of full-CLIP weights for the chosen tag (downloads when needed).
    weights: Callable[[], str] | None = None


@dataclass(frozen=True)
class EncoderSpec:
    """A named encoder. ``build(tag)`` returns its :class:`TowerConfig` for a pretrained tag or None."""

    name: str
    kind: EncoderKind
    family: str  # vit, resnet, convnext, transformer, bert, ...
    build: Callable[[str | None], TowerConfig]
    embed_dim: int | None = None
    image_size: int | None = None
    context_length: int | None = None
    pretrained_tags: tuple[str, ...] = ()
    description: str = ""
    plugin: str = ""  # filled in by the registry
    # Tags looked up only when asked for (a plugin can avoid importing torch at registration).
    list_tags: Callable[[], tuple[str, ...]] | None = None

    def tags(self) -> tuple[str, ...]:
        """The pretrained tags this encoder accepts."""
        return tuple(self.list_tags()) if self.list_tags is not None else self.pretrained_tags


@dataclass(frozen=True)
class EncoderNamespace:
    """A family of encoders named ``prefix:<name>`` resolved on demand (e.g. every timm model)."""

    prefix: str  # without the colon, e.g. "timm"
    kind: EncoderKind
    description: str
    list_names: Callable[[str], list[str]]  # wildcard pattern (without prefix) -> names
    resolve: Callable[[str], EncoderSpec | None]  # name (without prefix) -> spec, or None
    plugin: str = ""


class EncoderRegistry:
    """Encoders and encoder namespaces, as collected from every plugin's hooks."""

    def __init__(self, encoders: dict[str, EncoderSpec], namespaces: dict[str, EncoderNamespace]) -> None:
        self.encoders = encoders  # by lower-case name
        self.namespaces = namespaces  # by lower-case prefix

    def get(self, name: str) -> EncoderSpec:
        """The encoder called ``name`` (case-insensitive); unknown names get close matches."""
        key = name.strip().lower()
        if key in self.encoders:
            return self.encoders[key]
        prefix, sep, rest = name.strip().partition(":")
        if sep and prefix.lower() in self.namespaces:
            ns = self.namespaces[prefix.lower()]
            spec = ns.resolve(rest)
            if spec is not None:
                return dataclasses.replace(spec, plugin=ns.plugin)
            candidates = [f"{ns.prefix}:{n}" for n in ns.list_names(f"*{rest[:4]}*")][:2000]
        else:
            candidates = list(self.encoders)
        raise EncoderNotFoundError(
            f"unknown encoder {name!r}{did_you_mean(key, candidates)}",
            hint="run `medclip encoders` to list them",
        )

    def find(self, pattern: str | None = None) -> list[EncoderSpec | str]:
        """Named encoders matching a wildcard; namespace names (``timm:*x*``) are returned as strings."""
        if pattern is None:
            return sorted(self.encoders.values(), key=lambda s: _natural_key(s.name))
        prefix, sep, rest = pattern.partition(":")
        if sep and prefix.lower() in self.namespaces:
            ns = self.namespaces[prefix.lower()]
            return [f"{ns.prefix}:{n}" for n in ns.list_names(rest or "*")]
        pat = pattern.lower()
        return [s for s in self.find() if fnmatch.fnmatchcase(s.name.lower(), pat)]


def _natural_key(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name.lower())]


def get_registry() -> EncoderRegistry:
    """The process-wide registry, collected from the plugins on first use."""
    return EncoderRegistry(
        collect("register_encoders", EncoderSpec, what="encoder", key=lambda spec: spec.name.lower()),
        collect(
            "register_encoder_namespaces",
            EncoderNamespace,
            what="encoder namespace",
            key=lambda ns: ns.prefix.lower(),
        ),
    )


def get_encoder(name: str) -> EncoderSpec:
    """Look up one encoder by name."""
    return get_registry().get(name)


def text_tower_of(spec: EncoderSpec) -> EncoderSpec:
    """The encoder whose text tower ``spec`` uses by default: itself, or CLIP's for an image-only encoder."""
    return get_encoder(DEFAULT_TEXT_ENCODER) if spec.kind == "image" else spec


def find_encoders(pattern: str | None = None) -> list[EncoderSpec | str]:
    """List encoders, optionally filtered by a wildcard such as ``vit-*`` or ``timm:*resnet*``."""
    return get_registry().find(pattern)


def namespaces() -> Iterable[EncoderNamespace]:
    return get_registry().namespaces.values()


__all__ = [
    "DEFAULT_TEXT_ENCODER",
    "EncoderKind",
    "EncoderNamespace",
    "EncoderRegistry",
    "EncoderSpec",
    "TowerConfig",
    "find_encoders",
    "get_encoder",
    "get_registry",
    "namespaces",
    "text_tower_of",
]
