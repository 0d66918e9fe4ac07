"""Pretrained weights: use the local cache, download when online, fail fast and clearly when offline.

open_clip alone retries the Hugging Face hub for about a minute before failing offline; a user
without network gets one line from us at once instead.
"""

from __future__ import annotations

import os
import socket
from typing import Callable

from medclip_cli.errors import PretrainedUnavailableError

HF_HOST = "huggingface.co"
_OFFLINE_VALUES = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """True when the user asked for offline mode (``HF_HUB_OFFLINE`` / ``MEDCLIP_OFFLINE``)."""
    return any(
        os.environ.get(var, "").strip().lower() in _OFFLINE_VALUES
        for var in ("HF_HUB_OFFLINE", "MEDCLIP_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def host_reachable(host: str = HF_HOST, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def cached_hf_file(repo_id: str, filename: str) -> str | None:
    """The local path of a file already in the Hugging Face cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo_id, filename)
    return path if isinstance(path, str) and os.path.isfile(path) else None


def ensure_can_download(what: str, *, alternative: str) -> None:
    """Raise at once when ``what`` would have to be downloaded but there is no network."""
    if hub_offline() or not host_reachable():
        raise PretrainedUnavailableError(
            f"{what} are not in the local cache and {HF_HOST} cannot be reached",
            hint=f"connect once to cache them, or {alternative}",
        )


def fetch_open_clip_weights(arch: str, tag: str) -> str:
    """A local file with open_clip's pretrained weights ``arch``/``tag`` (cache, else download)."""
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    cfg = get_pretrained_cfg(arch, tag)
    hub = cfg.get("hf_hub", "")
    if hub:
        repo_id, filename = os.path.split(hub)
        for name in (filename,) if filename else ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            cached = cached_hf_file(repo_id, name)
            if cached:
                return cached
    return _download(
        f"pretrained weights {tag!r} for {arch}",
        lambda: download_pretrained(cfg),
        fetch_name=f"{arch.lower()}:{tag}",
    )


def offline_ways_out(fetch_name: str) -> str:
    """What a user without network can do instead of downloading weights."""
    return (
        f"on a machine with network run `medclip weights fetch {fetch_name}` and copy the cache here, "
        "or pass --model DIR (a model bundle), or --encoder NAME --pretrained FILE (a weights file)"
    )


def _download(what: str, fetch: Callable[[], str], *, fetch_name: str) -> str:
    ensure_can_download(what, alternative=offline_ways_out(fetch_name))
    try:
        path = fetch()
    except Exception as exc:  # network errors come in many types from hub/urllib
        raise PretrainedUnavailableError(f"downloading {what} failed: {exc}") from exc
    if not path or not os.path.isfile(path):
        raise PretrainedUnavailableError(f"downloading {what} produced no file")
    return path
