"""The encoder registry: named image, text and full-CLIP towers contributed by plugins."""

from __future__ import annotations

import difflib
import fnmatch
import re
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal

from medclip_cli.errors import EncoderNotFoundError, PluginError

EncoderKind = Literal["clip", "image", "text"]


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
    """Encoders collected from every plugin's hooks; duplicates are an error naming both plugins."""

    def __init__(self) -> None:
        self.encoders: dict[str, EncoderSpec] = {}
        self.namespaces: dict[str, EncoderNamespace] = {}

    def collect(self, pm) -> None:
        for impl in pm.hook.register_encoders.get_hookimpls():
            self._call(impl, self._add_encoder)
        for impl in pm.hook.register_encoder_namespaces.get_hookimpls():
            self._call(impl, self._add_namespace)

    def _call(self, impl, add: Callable) -> None:
        from medclip_cli.plugins import describe, plugin_code

        plugin_name = impl.plugin_name
        with plugin_code() as guard:
            impl.function(register=lambda item: add(item, plugin_name))
        if guard.error is not None:  # a plugin's own bug: skip that plugin, keep the rest
            warnings.warn(
                f"plugin {plugin_name!r} raised while registering encoders and was skipped: {describe(guard.error)}",
                stacklevel=2,
            )

    def _add_encoder(self, spec: EncoderSpec, plugin_name: str) -> None:
        if not isinstance(spec, EncoderSpec):
            raise PluginError(f"plugin {plugin_name!r} registered {spec!r}, which is not an EncoderSpec")
        key = spec.name.lower()
        if key in self.encoders:
            raise PluginError(
                f"encoder {spec.name!r} is registered by both {self.encoders[key].plugin!r} "
                f"and {plugin_name!r}",
                hint="uninstall one of the two plugins",
            )
        self.encoders[key] = _with_plugin(spec, plugin_name)

    def _add_namespace(self, ns: EncoderNamespace, plugin_name: str) -> None:
        key = ns.prefix.lower()
        if key in self.namespaces:
            raise PluginError(
                f"encoder namespace '{ns.prefix}:' is registered by both "
                f"{self.namespaces[key].plugin!r} and {plugin_name!r}",
                hint="uninstall one of the two plugins",
            )
        self.namespaces[key] = EncoderNamespace(**{**ns.__dict__, "plugin": plugin_name})

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
                return _with_plugin(spec, ns.plugin)
            candidates = [f"{ns.prefix}:{n}" for n in ns.list_names(f"*{rest[:4]}*")][:2000]
        else:
            candidates = list(self.encoders)
        close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.5)
        did_you_mean = f"; did you mean {', '.join(close)}?" if close else ""
        raise EncoderNotFoundError(
            f"unknown encoder {name!r}{did_you_mean}",
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


def _with_plugin(spec: EncoderSpec, plugin_name: str) -> EncoderSpec:
    return EncoderSpec(**{**spec.__dict__, "plugin": plugin_name})


def _natural_key(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name.lower())]


_REGISTRY: EncoderRegistry | None = None


def get_registry() -> EncoderRegistry:
    """The process-wide registry, collected from the plugins on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        from medclip_cli.plugins import get_plugin_manager

        registry = EncoderRegistry()
        registry.collect(get_plugin_manager())
        _REGISTRY = registry
    return _REGISTRY


def reset_registry() -> None:
    global _REGISTRY
    _REGISTRY = None


def get_encoder(name: str) -> EncoderSpec:
    """Look up one encoder by name."""
    return get_registry().get(name)


def find_encoders(pattern: str | None = None) -> list[EncoderSpec | str]:
    """List encoders, optionally filtered by a wildcard such as ``vit-*`` or ``timm:*resnet*``."""
    return get_registry().find(pattern)


def namespaces() -> Iterable[EncoderNamespace]:
    return get_registry().namespaces.values()


__all__ = [
    "EncoderKind",
    "EncoderNamespace",
    "EncoderRegistry",
    "EncoderSpec",
    "TowerConfig",
    "find_encoders",
    "get_encoder",
    "get_registry",
    "namespaces",
]
