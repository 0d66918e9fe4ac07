"""The plugin manager: built-in plugins and third-party entry points, loaded lazily and once."""

from __future__ import annotations

import contextlib
import importlib
import sys
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points

import pluggy

from medclip_cli import hookspecs

ENTRY_POINT_GROUP = "medclip"

#: Built-in plugins: registered through the same hooks a third-party package uses.
DEFAULT_PLUGINS = (
    "medclip_cli.default_plugins.open_clip_encoders",
    "medclip_cli.default_plugins.timm_encoders",
    "medclip_cli.default_plugins.hf_text_encoders",
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


def plugin_name_of(plugin: object) -> str:
    """The registration name of a plugin object (for error messages)."""
    name = get_plugin_manager().get_name(plugin)
    return name if name is not None else repr(plugin)


def reset() -> None:
    """Forget the loaded plugins (tests; a newly installed plugin in the same process)."""
    _manager.cache_clear()
    from medclip_cli import encoders

    encoders.reset_registry()
