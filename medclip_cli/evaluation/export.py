"""``embed``: a data set (or a folder of images) -> one embedding file with the model's identity.

Image embeddings come from (and go to) the embedding cache that ``evaluate`` uses, so embedding
a split that was evaluated before decodes and embeds nothing; a rerun whose output already holds
this model's embeddings of the same data is a no-op.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from medclip_cli.data.dataset import Dataset
from medclip_cli.errors import DataError, OutputError
from medclip_cli.evaluation.embed_file import (
    EmbeddingTable,
    check_same_model,
    describe,
    identity_key,
    output_suffix_ok,
    read_embedding_file,
)
from medclip_cli.progress import NullProgress, ProgressReporter, stage


@dataclass
class EmbedResult:
    table: EmbeddingTable
    up_to_date: bool  # the output already held exactly this; nothing was computed or written
    from_cache: bool  # every split's image embeddings came from the embedding cache
    seconds: float


def load_embed_datasets(
    data: Path, splits: Sequence[str], dataset_kind: str | None = None, **options
) -> list[Dataset]:
    """The splits to embed: those named, else every split; a plain folder of images is one split."""
    from medclip_cli.data import list_splits, load_dataset, resolve_format
    from medclip_cli.data.image_list import FORMAT, load_image_list

    data = Path(data)
    if dataset_kind == FORMAT or (dataset_kind is None and data.is_dir() and not _has_format(data, resolve_format)):
        return [load_image_list(data)]
    names = list(dict.fromkeys(splits)) or list_splits(data, dataset_kind, **options)
    return [load_dataset(data, split, dataset_kind, **options) for split in names]


def _has_format(path: Path, resolve_format) -> bool:
    try:
        resolve_format(path)
    except DataError:
        return False
    return True


def check_output_file(output: Path) -> None:
    """Refuse an output that cannot be an embedding file before anything is embedded."""
    if not output_suffix_ok(output):
        raise OutputError(f"--output {output}: an embedding file ends in .parquet or .npz")
    if output.is_dir():
        raise OutputError(f"--output {output}: is a folder", hint="name a file such as embeddings.parquet")
    parent = output.parent if str(output.parent) else Path(".")
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"--output {output}: {existing} is not a folder")


def existing_output(output: Path, identity: dict, overwrite: bool) -> EmbeddingTable | None:
    """The table already at ``output`` when it is this model's; another model's is refused."""
    if not output.exists():
        return None
    try:
        table = read_embedding_file(output)
    except DataError as exc:
        if overwrite:
            return None
        raise DataError(
            f"--output {output}: exists and is not an embedding file medclip can read ({exc.message})",
            hint="pass --overwrite to replace it, or choose another --output",
        ) from None
    if identity_key(table.identity) != identity_key(identity) and not overwrite:
        try:
            check_same_model([("this run", identity), (str(output), table.identity)])
        except DataError as exc:
            raise DataError(exc.message, hint="pass --overwrite to replace it, or choose another --output") from None
    return table if identity_key(table.identity) == identity_key(identity) else None


def is_up_to_date(table: EmbeddingTable | None, datasets: Sequence[Dataset], captions: bool) -> bool:
    if table is None:
        return False
    wanted = [(d.format, str(d.root), d.split, d.fingerprint()) for d in datasets]
    held = [(d.get("format"), d.get("root"), d.get("split"), d.get("fingerprint")) for d in table.datasets]
    has_captions = any(table.captions)
    return wanted == held and (table.text is not None) == (captions and has_captions)


def embed_datasets(
    model,
    identity: dict,
    datasets: Sequence[Dataset],
    *,
    captions: bool = True,
    batch_size: int = 64,
    cache: bool = True,
    progress: ProgressReporter | None = None,
) -> tuple[EmbeddingTable, bool]:
    """Embed every readable image of ``datasets`` (and each distinct caption once, with
    ``captions``); returns the table and whether all image embeddings came from the cache."""
    from medclip_cli.evaluation.embeddings import embed_images, model_fingerprint

    progress = progress or NullProgress()
    key = model_fingerprint(model) if cache else None
    model.module.eval()
    parts, all_cached, skipped, described = [], True, [], []
    for dataset in datasets:
        found = embed_images(
            model, dataset, batch_size=batch_size, cache=cache, model_key=key, progress=progress, name=identity.get("name")
        )
        all_cached &= found.from_cache
        skipped += [{"split": dataset.split, "id": i, "reason": r} for i, r in found.skipped]
        described.append(
            {
                "format": dataset.format,
                "root": str(dataset.root),
                "split": dataset.split,
                "fingerprint": dataset.fingerprint(),
                "n_images": len(dataset),
                "n_embedded": len(found.indices),
            }
        )
        parts.append((dataset, found))
    if not any(found.indices for _, found in parts):
        total = sum(len(d) for d in datasets)
        raise DataError(f"none of the {total} images could be read (first: {skipped[0]['id']}: {skipped[0]['reason']})")
    table = _table(parts, identity, described, skipped)
    if captions:
        splits = "+".join(d.split for d in datasets)
        table.text = _caption_embeddings(model, table.captions, progress, stage(f"{splits} captions", identity.get("name")))
    return table, all_cached


def _table(parts, identity: dict, described: list[dict], skipped: list[dict]) -> EmbeddingTable:
    fields = list(dict.fromkeys(name for dataset, _ in parts for name in dataset.label_fields))
    ids, paths, splits, caps, image = [], [], [], [], []
    labels: dict[str, list[str | None]] = {name: [] for name in fields}
    for dataset, found in parts:
        image.append(found.features.numpy().astype(np.float32))
        for i in found.indices:
            sample = dataset.samples[i]
            ids.append(sample.id)
            paths.append(str(Path(sample.image).absolute()))
            splits.append(dataset.split)
            caps.append((sample.caption or "").strip() or None)
            for name in fields:
                value = sample.labels.get(name)
                known = dataset.label_fields.get(name)
                labels[name].append(value if known is not None and value in known.classes else None)
    return EmbeddingTable(np.concatenate(image), ids, paths, splits, caps, labels, identity, None, described, skipped)


def _caption_embeddings(model, captions: list[str | None], progress: ProgressReporter, what: str) -> np.ndarray | None:
    """The text embedding of each caption (NaN rows where none); ``what``: ``dev captions (MODEL)``."""
    distinct = list(dict.fromkeys(c for c in captions if c))
    if not distinct:
        return None
    task = progress.task(f"embedding {len(distinct)} {what}", total=len(distinct))
    chunks, step = [], 256
    for start in range(0, len(distinct), step):
        chunks.append(model.encode_texts(distinct[start : start + step]).float().cpu().numpy())
        progress.advance(task, len(chunks[-1]))
    progress.done(task)
    by_text = dict(zip(distinct, np.concatenate(chunks)))
    out = np.full((len(captions), chunks[0].shape[1]), np.nan, dtype=np.float32)
    for row, caption in enumerate(captions):
        if caption:
            out[row] = by_text[caption]
    return out


def run_embed(
    model,
    identity: dict,
    datasets: Sequence[Dataset],
    output: Path,
    *,
    captions: bool = True,
    batch_size: int = 64,
    cache: bool = True,
    overwrite: bool = False,
    progress: ProgressReporter | None = None,
) -> EmbedResult:
    """Embed ``datasets`` into ``output`` unless it already holds exactly that."""
    from medclip_cli.evaluation.embed_file import write_embedding_file

    start = time.perf_counter()
    held = existing_output(output, identity, overwrite)
    if is_up_to_date(held, datasets, captions):
        return EmbedResult(held, True, True, time.perf_counter() - start)
    table, from_cache = embed_datasets(
        model, identity, datasets, captions=captions, batch_size=batch_size, cache=cache, progress=progress
    )
    write_embedding_file(output, table)
    return EmbedResult(table, False, from_cache, time.perf_counter() - start)


__all__ = ["EmbedResult", "describe", "embed_datasets", "load_embed_datasets", "run_embed"]
