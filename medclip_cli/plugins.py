"""The plugin manager: built-in plugins and third-party entry points, loaded lazily and once."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
import sys
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Callable, Iterable, TypeVar

import pluggy

from medclip_cli import hookspecs
from medclip_cli.errors import PluginError

T = TypeVar("T")

ENTRY_POINT_GROUP = "medclip"

#: Built-in plugins: registered through the same hooks a third-party package uses.
DEFAULT_PLUGINS = (
    "medclip_cli.default_plugins.open_clip_encoders",
    "medclip_cli.default_plugins.timm_encoders",
    "medclip_cli.default_plugins.hf_text_encoders",
    "medclip_cli.default_plugins.medical_clips",
    "medclip_cli.default_plugins.test_encoders",
    "medclip_cli.default_plugins.datasets",
)


def builtin_name(module_name: str) -> str:
    return module_name.rsplit(".", 1)[-1]


_BUILTIN_NAMES = frozenset(builtin_name(m) for m in DEFAULT_PLUGINS)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded: where it came from and why."""

    name: str
    distribution: str
    error: str


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin, for ``medclip plugins``."""

    name: str
    distribution: str
    hooks: tuple[str, ...]
    builtin: bool


class plugin_code:
    """Runs a plugin's own code (its import, its hooks) so that nothing it does ends the command.

    Whatever it prints goes to stderr (``--json`` on stdout stays valid JSON); whatever it raises,
    ``SystemExit`` and ``KeyboardInterrupt`` included, is kept in ``error`` as that plugin's failure.
    A :class:`medclip_cli.errors.PluginError` (a registration medclip refuses) still propagates.
    """

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self._redirect = contextlib.redirect_stdout(sys.stderr)

    def __enter__(self) -> "plugin_code":
        self._redirect.__enter__()
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        self._redirect.__exit__(None, None, None)
        from medclip_cli.errors import PluginError

        if exc is None or isinstance(exc, PluginError):
            return False
        if isinstance(exc, (Exception, SystemExit, KeyboardInterrupt)):
            self.error = exc
            return True
        return False


def describe(exc: BaseException) -> str:
    """``Type: message`` of a plugin's exception, on one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Manager:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("medclip")
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.distributions: dict[str, str] = {}
        for module_name in DEFAULT_PLUGINS:
            module = importlib.import_module(module_name)
            name = builtin_name(module_name)
            self.pm.register(module, name=name)
            self.distributions[name] = "medclip-cli (built-in)"
        self._load_entry_points()
        self.pm.check_pending()

    def _load_entry_points(self) -> None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "unknown distribution"
            with plugin_code() as guard:  # one broken plugin must never break every command
                if self.pm.has_plugin(ep.name):
                    raise ValueError(f"a plugin named {ep.name!r} is already registered")
                self.pm.register(ep.load(), name=ep.name)
            if guard.error is not None:
                self._skip(ep.name, dist, guard.error)
                continue
            try:
                self.pm.check_pending()
            except pluggy.PluginValidationError as exc:
                self.pm.unregister(name=ep.name)
                self._skip(ep.name, dist, exc)
                continue
            self.distributions[ep.name] = dist

    def _skip(self, name: str, dist: str, exc: BaseException) -> None:
        self.failures.append(PluginFailure(name, dist, describe(exc)))
        warnings.warn(f"plugin {name!r} from {dist} failed to load and was skipped: {describe(exc)}", stacklevel=3)


@lru_cache(maxsize=1)
def _manager() -> _Manager:
    return _Manager()


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (built on first use)."""
    return _manager().pm


def plugin_failures() -> list[PluginFailure]:
    """Plugins that failed to load in this process."""
    return list(_manager().failures)


def list_plugins() -> list[PluginInfo]:
    """Every registered plugin with the hooks it implements."""
    manager = _manager()
    infos = []
    for name, plugin in manager.pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = tuple(sorted(h.name for h in manager.pm.get_hookcallers(plugin) or ()))
        dist = manager.distributions.get(name, "registered in-process")
        infos.append(PluginInfo(name, dist, hooks, name in _BUILTIN_NAMES))
    return infos


def distribution_of(plugin_name: str) -> str:
    """The distribution a registered plugin came from (for warnings and ``medclip plugins``)."""
    return _manager().distributions.get(plugin_name, "registered in-process")


# Items collected from the plugins' ``register_*`` hooks, by hook name, with the plugins they
# were collected from: registering or unregistering a plugin in-process collects again.
_COLLECTED: dict[str, tuple[tuple, dict]] = {}


def collect(hook: str, item_type: type[T], *, what: str, key: Callable[[T], str] = lambda item: item.name) -> dict[str, T]:
    """Every item the plugins register through ``hook``, by ``key``; collected once per process.

    Each item is a dataclass with a ``plugin`` field, filled in with the plugin's name. The same
    key from two plugins is a :class:`PluginError` naming both; a plugin whose hook raises is one
    warning naming its distribution, and the other plugins' items are still collected.
    """
    pm = get_plugin_manager()
    plugins = tuple(pm.list_name_plugin())  # holds the objects, so no id is reused while cached
    cached = _COLLECTED.get(hook)
    if cached is None or cached[0] != plugins:
        cached = _COLLECTED[hook] = (plugins, _collect(pm, hook, item_type, what, key))
    return cached[1]


def _collect(pm: pluggy.PluginManager, hook: str, item_type: type, what: str, key: Callable) -> dict:
    items: dict = {}
    for impl in getattr(pm.hook, hook).get_hookimpls():
        plugin = impl.plugin_name

        def register(item, plugin: str = plugin) -> None:
            if not isinstance(item, item_type):
                raise PluginError(f"plugin {plugin!r} registered {item!r}, which is not a {item_type.__name__}")
            k = key(item)
            if k in items:
                raise PluginError(
                    f"{what} {k!r} is registered by both {items[k].plugin!r} and {plugin!r}",
                    hint="uninstall one of the two plugins",
                )
            items[k] = dataclasses.replace(item, plugin=plugin)

        with plugin_code() as guard:  # prints, SystemExit, KeyboardInterrupt: that plugin's failure
            impl.function(register=register)
        if guard.error is not None:  # a plugin's own bug: skip that plugin, keep the rest
            warnings.warn(
                f"plugin {plugin!r} from {distribution_of(plugin)} raised while registering {what}s "
                f"and was skipped: {describe(guard.error)}",
                stacklevel=3,
            )
    return items


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean a, b?"`` for the close matches of an unknown name, or ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""


def reset() -> None:
    """Forget the loaded plugins and everything collected from them (tests; a newly installed plugin)."""
    _manager.cache_clear()
    _COLLECTED.clear()
