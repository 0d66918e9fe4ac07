"""Hugging Face hub repositories as local folders: the cache first, a download when online, and
one line at once when neither is possible.

Every setting is read from the environment at the moment of the call (``HF_HOME``,
``HF_HUB_CACHE``, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``), not when huggingface_hub was imported, so a
test or a script can point them elsewhere within one process.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from medclip_cli.errors import PretrainedUnavailableError, UsageError
from medclip_cli.models.pretrained import host_reachable, hub_offline

HUB_PREFIX = "hf-hub:"
DEFAULT_ENDPOINT = "https://huggingface.co"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# What a model needs: configs, tokenizer files and PyTorch weights; never TF, Flax, ONNX or GGUF copies.
_CONFIG_PATTERNS = ("*.json", "*.txt", "*.model", "*.tiktoken")
_WEIGHT_PREFERENCE = (
    ("open_clip_model.safetensors",),
    ("open_clip_pytorch_model.bin",),
    ("model.safetensors", "model-*.safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model-*.bin", "pytorch_model.bin.index.json"),
)


@dataclass(frozen=True)
class HubFolder:
    """A repository's files on this machine and the exact revision they came from."""

    repo_id: str
    path: Path
    revision: str  # the commit hash of the snapshot

    def provenance(self) -> dict:
        return {"hub_id": self.repo_id, "hub_revision": self.revision}


def hub_cache_dir() -> Path:
    """The hub cache: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or DEFAULT_ENDPOINT


def split_reference(name: str) -> tuple[str, str | None]:
    """``hf-hub:org/name@rev`` or ``org/name@rev`` -> (``org/name``, ``rev`` or None)."""
    name = name.removeprefix(HUB_PREFIX)
    repo_id, _, revision = name.partition("@")
    return repo_id, revision or None


def looks_like_repo_id(name: str) -> bool:
    return bool(_REPO_ID.match(split_reference(name)[0]))


def cached_snapshot(repo_id: str, revision: str | None = None) -> HubFolder | None:
    """The cached snapshot of ``repo_id`` at ``revision`` (a branch, tag or commit), or None."""
    folder = hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    ref = revision or "main"
    ref_file = folder / "refs" / ref
    commit = ref_file.read_text(encoding="utf-8").strip() if ref_file.is_file() else ref
    snapshot = folder / "snapshots" / commit
    if not snapshot.is_dir():
        return None
    return HubFolder(repo_id, snapshot, commit)


def resolve_repo(
    name: str, *, what: str | None = None, configs_only: bool = False, fetch_as: str | None = None
) -> HubFolder:
    """A local snapshot of hub repository ``name`` (``org/name[@revision]``): cached, else downloaded.

    Offline (``HF_HUB_OFFLINE=1``) or without a reachable hub, a repository that is not cached
    raises :class:`PretrainedUnavailableError` at once, naming the command that pre-fetches it.
    """
    repo_id, revision = split_reference(name)
    if not looks_like_repo_id(repo_id):
        raise UsageError(f"{name!r} is not a Hugging Face hub id (expected org/name)")
    cached = cached_snapshot(repo_id, revision)
    if cached is not None:
        return cached
    label = what or repo_id
    if hub_offline() or not _endpoint_reachable():
        reason = "HF_HUB_OFFLINE is set" if hub_offline() else f"{hub_endpoint()} cannot be reached"
        raise PretrainedUnavailableError(
            f"{label} ({repo_id}) is not in the hub cache {hub_cache_dir()} and {reason}",
            hint=f"on a machine with network run `medclip weights fetch {fetch_as or name}` and copy {hub_cache_dir()} here",
        )
    return download_repo(repo_id, revision, what=label, configs_only=configs_only)


def download_repo(
    repo_id: str, revision: str | None = None, *, what: str | None = None, configs_only: bool = False
) -> HubFolder:
    """Download the configs, tokenizer files and (unless ``configs_only``) one PyTorch copy of the
    weights of ``repo_id``."""
    from huggingface_hub import HfApi, snapshot_download

    label = what or repo_id
    if hub_offline():
        raise PretrainedUnavailableError(
            f"cannot download {label} ({repo_id}): HF_HUB_OFFLINE is set",
            hint="unset it on a machine with network to fetch",
        )
    try:
        info = HfApi(endpoint=hub_endpoint()).model_info(repo_id, revision=revision)
        files = [s.rfilename for s in info.siblings or ()]
        path = snapshot_download(
            repo_id,
            revision=info.sha or revision,
            cache_dir=str(hub_cache_dir()),
            endpoint=hub_endpoint(),
            allow_patterns=wanted_files(files, configs_only=configs_only),
        )
    except Exception as exc:  # hub errors come in many types (HTTP, gated repo, not found)
        raise PretrainedUnavailableError(
            f"downloading {label} ({repo_id}) from {hub_endpoint()} failed: {type(exc).__name__}: {_first_line(exc)}",
            hint="check the name; gated models (e.g. MedSigLIP) need their terms accepted and HF_TOKEN set",
        ) from exc
    path = Path(path)
    commit = info.sha or path.name
    if revision != commit:
        # Downloaded by commit (so that every file is of one revision): point the branch or tag
        # at it, as huggingface_hub does, so an offline run finds it by that name.
        _write_ref(path.parent.parent / "refs" / (revision or "main"), commit)
    return HubFolder(repo_id, path, commit)


def _write_ref(ref: Path, commit: str) -> None:
    from medclip_cli.atomic import write_text_atomic

    ref.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(ref, commit)


def wanted_files(files: list[str], *, configs_only: bool = False) -> list[str]:
    """The files of a repository a model needs: configs and tokenizer, and the first weights format
    of :data:`_WEIGHT_PREFERENCE` the repository has."""
    import fnmatch

    keep = [f for f in files if "/" not in f and any(fnmatch.fnmatch(f, p) for p in _CONFIG_PATTERNS)]
    for patterns in () if configs_only else _WEIGHT_PREFERENCE:
        weights = [f for f in files if "/" not in f and any(fnmatch.fnmatch(f, p) for p in patterns)]
        if weights:
            keep += weights
            break
    return sorted(set(keep))


def _endpoint_reachable() -> bool:
    url = urlparse(hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    return host_reachable(url.hostname or "huggingface.co", port)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""
