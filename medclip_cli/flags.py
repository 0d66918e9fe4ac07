"""How the command line spells a setting, for messages: ``image_column`` is ``--image-column``.

A setting's flag is its name with dashes, unless the running command spells it otherwise: a
command declares its options once (Typer) and hands their spelling over with :func:`spell`,
read off its own parameters, so that a lower layer's message names the flag the user typed
(``--wd`` for ``weight_decay``) without a table of its own.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Mapping

_SPELLING: ContextVar[Mapping[str, str]] = ContextVar("medclip_flag_spelling", default={})


def flag(name: str) -> str:
    """The command-line flag of setting ``name`` (``--`` + the name with dashes unless spelled)."""
    return _SPELLING.get().get(name) or "--" + name.replace("_", "-")


def spell(spelling: Mapping[str, str]) -> None:
    """The running command's flags by setting name (in force for the rest of this context)."""
    _SPELLING.set(dict(spelling))
