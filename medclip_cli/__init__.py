"""medclip: assess and improve CLIP-style image-text models on medical images."""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Marker for plugin hook implementations: ``@medclip_cli.hookimpl``.
hookimpl = pluggy.HookimplMarker("medclip")

__all__ = ["__version__", "hookimpl"]
