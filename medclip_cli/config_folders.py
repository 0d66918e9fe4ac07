"""Where experiments, label names and prompt sets come from: the built-in ``configs/`` and the user's.

The built-in folder is ``configs/`` at the top of the checkout; every installed form (wheel,
``pip install .``, a git URL) carries it as ``medclip_cli/configs`` (see ``setup.py``). A user
keeps their own files in the same layout (``experiments/``, ``labels/``, ``prompts/``) in
``--config-dir DIR``, ``MEDCLIP_CONFIG_DIR`` or the platform's user config folder
(``~/.config/medclip`` on Linux). Both are listed together; the user's file wins on a name clash.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_DIR_ENV = "MEDCLIP_CONFIG_DIR"
KINDS = ("experiments", "labels", "prompts")


def builtin_config_dir() -> Path:
    """The shipped configs: inside the installed package, else the checkout's top-level ``configs/``."""
    package = Path(__file__).resolve().parent
    installed = package / "configs"
    return installed if installed.is_dir() else package.parent / "configs"


def user_config_dir() -> Path:
    """The user's own configs: ``MEDCLIP_CONFIG_DIR`` (set by ``--config-dir``), else the platform's folder."""
    env = os.environ.get(CONFIG_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir as platform_dir

    return Path(platform_dir("medclip", appauthor=False))


def config_dirs() -> list[Path]:
    """The folders searched, the user's first (it wins); the built-in one once if both are the same."""
    user, builtin = user_config_dir(), builtin_config_dir()
    same = user.exists() and builtin.exists() and user.resolve() == builtin.resolve()
    return [builtin] if same else [user, builtin]


def config_files(kind: str, suffix: str = ".toml") -> dict[str, Path]:
    """Every ``kind`` file by name (``experiments`` -> {name: path}); a user file hides a built-in one."""
    found: dict[str, Path] = {}
    for folder in reversed(config_dirs()):  # built-in first, so the user's overwrite it
        sub = folder / kind
        if sub.is_dir():
            found.update({p.stem: p for p in sorted(sub.glob(f"*{suffix}")) if p.is_file()})
    return dict(sorted(found.items()))


def find_config(kind: str, name: str, suffix: str = ".toml") -> Path | None:
    """The file for ``name`` (user's first), or None."""
    for folder in config_dirs():
        path = folder / kind / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def origin(path: Path) -> str:
    """``built-in`` or ``user`` for a file found by :func:`config_files`."""
    try:
        path.resolve().relative_to(builtin_config_dir().resolve())
        return "built-in"
    except ValueError:
        return "user"
