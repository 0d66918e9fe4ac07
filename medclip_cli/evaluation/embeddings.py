"""Image embeddings of a data set: computed once per model, cached on disk under ``MEDCLIP_HOME``.

The cache key is the model (a hash of its config and every weight), the data (the split's
fingerprint: ids, captions, labels, file sizes and times) and the preprocessing; a second
evaluation of the same model on the same data (new prompts, other tasks) reads the features
back and only embeds text.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medclip_cli.atomic import atomic_open
from medclip_cli.data.dataset import Dataset
from medclip_cli.data.home import cache_dir
from medclip_cli.progress import NullProgress, ProgressReporter, read_from_cache, stage

CACHE_VERSION = 1


@dataclass
class ImageEmbeddings:
    """L2-normalised features ``[N, D]`` (float32, CPU) of ``dataset.samples[indices[i]]``."""

    features: object  # torch.Tensor
    indices: list[int]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (sample id, reason)
    from_cache: bool = False
    seconds: float = 0.0  # decoding and embedding time (0 when read from the cache)


def embeddings_cache_dir() -> Path:
    return cache_dir() / "embeddings"


def model_fingerprint(model) -> str:
    """A hash of the model's config, preprocessing and every tensor of its state dict."""
    import torch

    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(model.model_cfg, sort_keys=True, default=str).encode())
    digest.update(json.dumps(model.preprocess.as_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.module.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().data)
    return digest.hexdigest()


def embedding_cache_path(model_key: str, dataset: Dataset, preprocess) -> Path:
    """Where the embeddings of ``dataset`` by the model ``model_key`` are cached."""
    raw = json.dumps(
        [CACHE_VERSION, model_key, dataset.fingerprint(), str(dataset.root), preprocess.as_dict()],
        sort_keys=True,
        default=str,
    )
    return embeddings_cache_dir() / f"{hashlib.sha256(raw.encode()).hexdigest()[:32]}.npz"


def embed_images(
    model,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    cache: bool = True,
    model_key: str | None = None,
    progress: ProgressReporter | None = None,
    name: str | None = None,
) -> ImageEmbeddings:
    """Features of every readable image of ``dataset`` (unreadable ones are listed in ``skipped``).

    ``name``: the model's short name, for the progress stage (``embedding 100 dev images (NAME)``)."""
    progress = progress or NullProgress()
    path = None
    if cache:
        path = embedding_cache_path(model_key or model_fingerprint(model), dataset, model.preprocess)
        cached = load_embeddings(path)
        if cached is not None:
            read_from_cache(progress, _images_stage(len(cached.indices), dataset, name))
            return cached
    start = time.perf_counter()
    features, indices, skipped = _compute(model, dataset, batch_size, progress, cache, name)
    result = ImageEmbeddings(features, indices, skipped, False, time.perf_counter() - start)
    if path is not None:
        save_embeddings(path, result)
    return result


def _images_stage(count: int, dataset: Dataset, name: str | None) -> str:
    return stage(f"embedding {count} {dataset.split} images", name)


def _compute(model, dataset: Dataset, batch_size: int, progress: ProgressReporter, cache: bool, name: str | None):
    import torch

    from medclip_cli.data.pixels import load_pixels
    from medclip_cli.data.preprocess import normalize_batch
    from medclip_cli.data.row_file import RowFile

    pixels = load_pixels(dataset, model.preprocess, progress=progress, cache=cache)  # --no-cache: no pixel cache either
    model.module.eval()
    chunks = []
    # Read from the cache file, not through its map: the set's pixels do not pile up in the
    # process's resident memory as the batches go by (data/row_file.py).
    file = RowFile.of(pixels.array)
    task = progress.task(_images_stage(len(pixels), dataset, name), total=len(pixels))
    for start in range(0, len(pixels), batch_size):
        rows = file.read(start, start + batch_size) if file is not None else pixels.array[start : start + batch_size]
        batch = normalize_batch(rows, model.preprocess, device=model.device)
        chunks.append(model.encode_images(batch).float().cpu())
        progress.advance(task, len(batch))
    progress.done(task)
    features = torch.cat(chunks) if chunks else torch.empty(0, model.embed_dim)
    return features, list(pixels.indices), list(pixels.skipped)


def load_embeddings(path: Path) -> ImageEmbeddings | None:
    """The cached embeddings, or None when absent or unreadable (then they are recomputed)."""
    import torch

    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            features = torch.from_numpy(np.array(data["features"], dtype=np.float32))
            indices = [int(i) for i in data["indices"]]
            skipped = [tuple(pair) for pair in json.loads(str(data["skipped"]))]
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    if features.ndim != 2 or len(features) != len(indices):
        return None
    return ImageEmbeddings(features, indices, skipped, from_cache=True)


def save_embeddings(path: Path, embeddings: ImageEmbeddings) -> None:
    """Write the cache entry atomically; a cache that cannot be written only costs time later."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as fh:
            np.savez(
                fh,
                features=embeddings.features.numpy().astype(np.float32),
                indices=np.asarray(embeddings.indices, dtype=np.int64),
                skipped=np.asarray(json.dumps(embeddings.skipped)),
            )
    except OSError:
        return
