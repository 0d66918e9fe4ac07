"""Whole models by reference: what ``--model`` accepts besides a medclip bundle.

- a folder: a medclip bundle, an open_clip hub folder (``open_clip_config.json``), or a
  transformers ``CLIPModel`` / ``SiglipModel`` folder (``config.json``);
- a file: an OpenAI TorchScript archive (``ViT-B-32.pt``);
- a short name registered with a hub id (``biomedclip``, ``pubmedclip``: ``medclip encoders``);
- a hub repository: ``hf-hub:org/name`` (also ``open_clip:hf-hub:org/name``) or ``org/name``,
  optionally ``@revision``;
- an encoder with pretrained weights: ``vit-b-32`` (its ``openai`` weights) or ``vit-b-32:laion2b_s34b_b79k``.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from medclip_cli.errors import EncoderNotFoundError, ModelError, UsageError

_PREFIXES = ("open_clip:hf-hub:", "hf-hub:")
DEFAULT_TAG = "openai"


def hub_name(reference: str) -> str | None:
    """``org/name[@rev]`` when ``reference`` names a hub repository, else None."""
    from medclip_cli.models.hub import looks_like_repo_id

    for prefix in _PREFIXES:
        if reference.startswith(prefix):
            return reference[len(prefix) :]
    if looks_like_repo_id(reference) and not Path(reference).exists():
        return reference
    return None


def registered_model(name: str):
    """The encoder spec of a complete published model named ``name`` (e.g. biomedclip), or None."""
    from medclip_cli.encoders import get_encoder

    try:
        spec = get_encoder(name)
    except EncoderNotFoundError:
        return None
    return spec if spec.hub_id else None


def open_model(reference: str | Path):
    """The model ``reference`` names (see the module notes); hub models are cached on first use."""
    text = str(reference).strip()
    path = Path(text).expanduser()
    if path.exists():
        return load_local(path)
    spec = registered_model(text)
    if spec is not None:
        return load_hub(spec.hub_id, label=spec.name, fetch_as=spec.name)
    repo = hub_name(text)
    if repo is not None:
        return load_hub(repo)
    return _pretrained_encoder(text)


def load_local(path: Path, provenance: dict | None = None):
    """A model from a folder or file on this machine, whatever its format."""
    from medclip_cli.models.bundle import CONFIG_NAME, load_bundle
    from medclip_cli.models.hf_clip import is_hf_dual_encoder, load_hf_dual_encoder
    from medclip_cli.models.open_clip_hub import is_open_clip_folder, load_open_clip_folder
    from medclip_cli.models.torchscript import is_torchscript_archive, load_openai_torchscript
    from medclip_cli.models.weights import WEIGHTS_NAME

    if path.is_file():
        if is_torchscript_archive(path):
            return load_openai_torchscript(path, provenance)
        raise ModelError(
            f"{path}: not a model archive medclip can load on its own",
            hint="a weights file needs its architecture: pass --encoder NAME --pretrained FILE",
        )
    if (path / CONFIG_NAME).is_file():
        local_bundle = (path / WEIGHTS_NAME).is_file() and provenance is None
        if is_open_clip_folder(path) and not local_bundle:
            return load_open_clip_folder(path, provenance)
        return load_bundle(path)  # a bundle, or its own errors (no weights, bad JSON)
    if is_hf_dual_encoder(path):
        return load_hf_dual_encoder(path, provenance)
    raise ModelError(
        f"{path}: not a model bundle (no {CONFIG_NAME}, nor a transformers CLIP/SigLIP config.json)",
        hint="pass a folder written by medclip finetune, an open_clip or transformers model folder, or a hub id",
    )


def load_hub(name: str, label: str | None = None, fetch_as: str | None = None):
    """A model from a hub repository, recording the exact revision it was loaded at."""
    from medclip_cli.models.hub import HUB_PREFIX, resolve_repo

    folder = resolve_repo(name, what=label, fetch_as=fetch_as)
    provenance = {"source": label or f"{HUB_PREFIX}{folder.repo_id}", **folder.provenance()}
    return load_local(folder.path, provenance)


def _pretrained_encoder(text: str):
    """``vit-b-32`` (with its openai weights) or ``vit-b-32:TAG``."""
    from medclip_cli.encoders import find_encoders, get_encoder
    from medclip_cli.models.factory import ModelRequest, build_model

    name, _, tag = text.partition(":")
    try:
        spec = get_encoder(name)
    except EncoderNotFoundError:
        spec = None
    if spec is None or spec.kind != "clip":
        names = [s.name for s in find_encoders() if not isinstance(s, str) and s.kind == "clip"]
        close = difflib.get_close_matches(text.lower(), names, n=3, cutoff=0.5)
        did_you_mean = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(
            f"--model {text!r}: no such folder or file, and not a model name or hub id{did_you_mean}",
            hint="run `medclip encoders` for names, or pass hf-hub:org/name",
        )
    return build_model(ModelRequest(spec.name, pretrained=tag or default_tag(spec)))


def default_tag(spec) -> str | None:
    """The weights a bare CLIP encoder name stands for: OpenAI's where it has them (the study's)."""
    tags = spec.tags()
    if DEFAULT_TAG in tags:
        return DEFAULT_TAG
    return tags[0] if tags else None


def fetch_model(name: str) -> list[dict]:
    """Download what ``name`` needs into the local caches (for a later offline run); one row per
    repository or weights file: what it is, where it came from, the revision and the local path."""
    from medclip_cli.models.hub import HUB_PREFIX, download_repo, split_reference

    spec = registered_model(name)
    repo = spec.hub_id if spec is not None else hub_name(name)
    if repo is None:
        return [_fetch_encoder_weights(name)]
    repo_id, revision = split_reference(repo)
    folder = download_repo(repo_id, revision, what=spec.name if spec is not None else None)
    rows = [{"what": spec.name if spec else f"{HUB_PREFIX}{repo_id}", **folder.provenance(), "path": str(folder.path)}]
    tower = _text_tower_repo(folder.path)
    if tower is not None:
        text = download_repo(tower, what=f"text tower of {repo_id}", configs_only=True)
        rows.append({"what": "text tower config and tokenizer", **text.provenance(), "path": str(text.path)})
    return rows


def _text_tower_repo(folder: Path) -> str | None:
    import json

    config = folder / "open_clip_config.json"
    if not config.is_file():
        return None
    text_cfg = json.loads(config.read_text(encoding="utf-8")).get("model_cfg", {}).get("text_cfg", {})
    name = text_cfg.get("hf_model_name")
    return name if name and not Path(name).exists() else None


def _fetch_encoder_weights(text: str) -> dict:
    """``vit-b-32`` (its openai weights), ``vit-b-32:TAG`` or ``open_clip:ViT-B-32:TAG``."""
    from medclip_cli.encoders import get_encoder

    try:
        spec, tag = get_encoder(text), None
    except EncoderNotFoundError:
        name, sep, tag = text.rpartition(":")
        if not sep:
            raise
        spec = get_encoder(name)
    tag = tag or default_tag(spec)
    if not tag:
        raise UsageError(f"{spec.name} has no pretrained weights to fetch")
    tower = spec.build(tag)
    if tower.weights is None:
        raise UsageError(f"{spec.name}:{tag} has no weights file to fetch")
    return {"what": f"{spec.name}:{tag}", "hub_id": "", "hub_revision": "", "path": tower.weights()}


def ensure_local(reference: str) -> None:
    """Make sure a hub model ``reference`` is in the local cache (downloading it when online);
    raises :class:`PretrainedUnavailableError` at once when it cannot be. Other references are
    checked when they are opened."""
    from medclip_cli.models.hub import resolve_repo, split_reference

    if Path(reference).expanduser().exists():
        return
    spec = registered_model(reference)
    repo = spec.hub_id if spec is not None else hub_name(reference)
    if repo is None:
        return
    folder = resolve_repo(repo, what=spec.name if spec else None, fetch_as=spec.name if spec else reference)
    tower = _text_tower_repo(folder.path)
    if tower is not None:
        resolve_repo(tower, what=f"the text tower of {split_reference(repo)[0]}", configs_only=True, fetch_as=reference)
