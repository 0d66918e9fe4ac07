"""A re-run built in a staging folder names its final folder: :func:`rebase_paths` before the swap.

``reproduce`` builds the re-run of a finished experiment in ``.NAME.new`` and renames it over
``NAME`` only when it is complete. Everything written meanwhile (the fine-tune's ``config.json``,
``metrics.jsonl``, bundle provenance, checkpoint states, evaluation files, the report) names the
staging folder; once renamed, that folder no longer exists. Every such path is rewritten to the
final one first, text files as text and checkpoint states through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from medclip_cli.atomic import atomic_open, write_text_atomic

# Files medclip writes as text (JSON, JSON lines, CSV, Markdown, logs).
TEXT_SUFFIXES = {".json", ".jsonl", ".csv", ".md", ".txt", ".log", ".yaml", ".yml", ".toml"}
STATE_SUFFIX = ".pt"
_MAX_TEXT = 256 << 20  # a text file medclip wrote is far smaller; anything larger is left alone


def _pairs(old: Path, new: Path) -> list[tuple[str, str]]:
    """(spelling of ``old``, the same spelling of ``new``): as given, resolved, each also escaped
    as inside a JSON string; the longest first."""
    pairs = set()
    for before, after in ((str(old), str(new)), (str(old.resolve()), str(new.resolve()))):
        pairs |= {(before, after), (json.dumps(before)[1:-1], json.dumps(after)[1:-1])}
    return sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)


def rebase_paths(folder: Path, old: Path, new: Path) -> list[Path]:
    """Rewrite every mention of ``old`` (and its resolved form) under ``folder`` to ``new``; the
    files changed. Links are not followed; binary files other than checkpoint states are left."""
    pairs = _pairs(old, new)
    changed = []
    for root, dirs, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                continue
            if path.suffix in TEXT_SUFFIXES and path.stat().st_size <= _MAX_TEXT:
                if _rebase_text(path, pairs):
                    changed.append(path)
            elif path.suffix == STATE_SUFFIX and _rebase_state(path, pairs):
                changed.append(path)
    return changed


def _replace(text: str, pairs: list[tuple[str, str]]) -> str:
    for before, after in pairs:
        text = text.replace(before, after)
    return text


def _rebase_text(path: Path, pairs: list[tuple[str, str]]) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return False
    rebased = _replace(text, pairs)
    if rebased == text:
        return False
    write_text_atomic(path, rebased)
    return True


def _rebase_state(path: Path, pairs: list[tuple[str, str]]) -> bool:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a checkpoint state medclip wrote: left as it is
        return False
    hits = [False]

    def walk(value):
        if isinstance(value, str):
            rebased = _replace(value, pairs)
            hits[0] |= rebased != value
            return rebased
        if isinstance(value, dict):
            return {walk(k): walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            items = [walk(v) for v in value]
            return items if isinstance(value, list) else type(value)(items)
        return value

    rebased = walk(state)
    if not hits[0]:
        return False
    with atomic_open(path, "wb", fsync=True) as fh:
        torch.save(rebased, fh)
    return True
