"""Embedding files: L2-normalised image (and caption) embeddings with ids, paths, labels and the
identity of the model that made them, as Parquet (default) or ``.npz``.

Parquet layout (one row per image; pandas, pyarrow, DuckDB and polars read it as is)::

    id, path, split, caption           strings (caption null where the image has none)
    label:<field>                      one string column per label field (null: no label)
    image_embedding                    fixed-size list<float32>[D], unit length
    text_embedding                     fixed-size list<float32>[D] of the caption, null without one

and the schema metadata key ``medclip``: JSON with ``format_version``, ``model`` (the identity:
encoders, weights, ``weights_sha256``, ``preprocess``, ``embed_dim`` and how to rebuild it),
``splits`` (each split's data-set format, root and fingerprint) and ``skipped`` images.
The ``.npz`` file holds the same: arrays ``image_embedding``, ``text_embedding`` (NaN rows
without a caption), ``id``, ``path``, ``split``, ``caption`` and ``label:<field>`` (empty string:
none), and ``meta`` (the JSON above).

Two files are the same model only when their identity keys match (weights and preprocessing);
anything that combines files checks it (:func:`check_same_model`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from medclip_cli.atomic import atomic_open
from medclip_cli.errors import DataError, OutputError

FORMAT_VERSION = 1
META_KEY = b"medclip"
LABEL_PREFIX = "label:"
PARQUET_SUFFIXES = (".parquet", ".pq")
NPZ_SUFFIX = ".npz"
_REWRITE_HINT = "write it again with `medclip embed`"


@dataclass
class EmbeddingTable:
    """Rows of embedded images: ``image[i]`` is the unit-length embedding of ``paths[i]``."""

    image: np.ndarray  # [N, D] float32
    ids: list[str]
    paths: list[str]
    splits: list[str]
    captions: list[str | None]
    labels: dict[str, list[str | None]]
    identity: dict  # the model (see model_identity)
    text: np.ndarray | None = None  # [N, D] float32, NaN rows where there is no caption
    datasets: list[dict] = field(default_factory=list)  # one per split: format, root, split, fingerprint
    skipped: list[dict] = field(default_factory=list)  # {"split", "id", "reason"}

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.image.shape[1])

    @property
    def model_key(self) -> str:
        return identity_key(self.identity)

    def split_names(self) -> list[str]:
        return list(dict.fromkeys(self.splits))

    def rows(self, positions: Sequence[int] | np.ndarray) -> "EmbeddingTable":
        """The table restricted to ``positions`` (in that order)."""
        positions = np.asarray(positions, dtype=np.int64)
        pick = lambda values: [values[int(i)] for i in positions]  # noqa: E731
        return replace(
            self,
            image=self.image[positions],
            text=None if self.text is None else self.text[positions],
            ids=pick(self.ids),
            paths=pick(self.paths),
            splits=pick(self.splits),
            captions=pick(self.captions),
            labels={k: pick(v) for k, v in self.labels.items()},
        )

    def split(self, name: str) -> "EmbeddingTable":
        if name not in self.splits:
            raise DataError(
                f"the embedding file has no split {name!r} (it holds: {', '.join(self.split_names()) or 'none'})",
                hint=f"embed it with `medclip embed --split {name}`",
            )
        return self.rows([i for i, s in enumerate(self.splits) if s == name])

    def meta(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "model": self.identity,
            "model_key": self.model_key,
            "splits": self.datasets,
            "skipped": self.skipped,
            "n_rows": len(self),
            "embed_dim": self.dim,
        }


def weights_sha256(module) -> str:
    """SHA-256 over every tensor of the state dict (names, dtypes, shapes and bytes, name order)."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy().data)
    return digest.hexdigest()


def model_identity(model, name: str, source: dict) -> dict:
    """What a file records about the model: enough to tell two models apart and to rebuild it.

    ``source`` is how the model was asked for (``{"model": DIR}`` or the encoder options).
    """
    manifest = model.manifest
    return {
        "name": name,
        "image_encoder": manifest.get("image_encoder"),
        "text_encoder": manifest.get("text_encoder"),
        "pretrained": manifest.get("pretrained"),
        "text_pretrained": manifest.get("text_pretrained"),
        "weights_sha256": weights_sha256(model.module),
        "preprocess": model.preprocess.as_dict(),
        "embed_dim": model.embed_dim,
        "source": source,
    }


def identity_key(identity: dict) -> str:
    """Weights and preprocessing: what makes two embeddings comparable."""
    raw = json.dumps(
        [identity.get("weights_sha256"), identity.get("preprocess"), identity.get("embed_dim")],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def describe(identity: dict) -> str:
    sha = str(identity.get("weights_sha256") or "?")[:12]
    pre = identity.get("preprocess") or {}
    return (
        f"{identity.get('name')} (weights sha256 {sha}…, {pre.get('image_size')} px "
        f"{pre.get('resize_mode')}/{pre.get('interpolation')})"
    )


def check_same_model(identities: Sequence[tuple[str, dict]]) -> None:
    """Refuse to combine embeddings of different models or preprocessing (``(where, identity)``)."""
    if not identities:
        return
    first_where, first = identities[0]
    for where, other in identities[1:]:
        if identity_key(other) == identity_key(first):
            continue
        what = "preprocessing" if other.get("weights_sha256") == first.get("weights_sha256") else "models"
        raise DataError(
            f"cannot mix embeddings of different {what}: {first_where} is {describe(first)}; "
            f"{where} is {describe(other)}",
            hint="embed everything with one model and preprocessing",
        )


# --- writing ------------------------------------------------------------------------------


def write_embedding_file(path: str | Path, table: EmbeddingTable) -> Path:
    """Write ``table`` to ``path`` (Parquet, or ``.npz`` by suffix) atomically."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as fh:
            if path.suffix.lower() == NPZ_SUFFIX:
                _write_npz(fh, table)
            else:
                _write_parquet(fh, table)
    except OSError as exc:
        raise OutputError(f"{path}: writing the embedding file failed ({exc.strerror or exc})") from exc
    return path


def _write_parquet(fh, table: EmbeddingTable) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = table.dim
    columns = {
        "id": pa.array(table.ids, pa.string()),
        "path": pa.array(table.paths, pa.string()),
        "split": pa.array(table.splits, pa.string()),
        "caption": pa.array(table.captions, pa.string()),
    }
    for name, values in table.labels.items():
        columns[LABEL_PREFIX + name] = pa.array(values, pa.string())
    columns["image_embedding"] = _fixed_list(table.image, dim)
    if table.text is not None:
        has = ~np.isnan(table.text).any(axis=1)
        columns["text_embedding"] = _fixed_list(np.nan_to_num(table.text), dim, mask=~has)
    arrow = pa.table(columns)
    arrow = arrow.replace_schema_metadata({META_KEY: json.dumps(table.meta(), default=str).encode()})
    pq.write_table(arrow, fh)


def _fixed_list(matrix: np.ndarray, dim: int, mask: np.ndarray | None = None):
    import pyarrow as pa

    flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1))
    array = pa.FixedSizeListArray.from_arrays(flat, dim)
    if mask is not None and mask.any():
        array = pa.FixedSizeListArray.from_arrays(flat, dim, mask=pa.array(mask))
    return array


def _write_npz(fh, table: EmbeddingTable) -> None:
    arrays = {
        "image_embedding": np.asarray(table.image, dtype=np.float32),
        "id": np.asarray(table.ids, dtype=np.str_),
        "path": np.asarray(table.paths, dtype=np.str_),
        "split": np.asarray(table.splits, dtype=np.str_),
        "caption": np.asarray([c or "" for c in table.captions], dtype=np.str_),
        "meta": np.asarray(json.dumps(table.meta(), default=str)),
    }
    for name, values in table.labels.items():
        arrays[LABEL_PREFIX + name] = np.asarray([v or "" for v in values], dtype=np.str_)
    if table.text is not None:
        arrays["text_embedding"] = np.asarray(table.text, dtype=np.float32)
    np.savez(fh, **arrays)


# --- reading ------------------------------------------------------------------------------


def read_embedding_file(path: str | Path) -> EmbeddingTable:
    """Read a file written by :func:`write_embedding_file`; anything else is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such embedding file", hint="make one with `medclip embed`")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the embedding file ({exc.strerror})") from exc
    try:
        if magic == b"PAR1":
            table = _read_parquet(path)
        elif magic.startswith(b"PK"):
            table = _read_npz(path)
        else:
            raise ValueError("neither Parquet nor .npz")
    except DataError:
        raise
    except Exception as exc:  # pyarrow, zipfile, numpy and json each fail in their own way
        raise DataError(
            f"{path}: not a readable medclip embedding file ({type(exc).__name__}: {_short(exc)})",
            hint=_REWRITE_HINT,
        ) from None
    _check(path, table)
    return table


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:160] + ("…" if len(text) > 160 else "")


def _read_parquet(path: Path) -> EmbeddingTable:
    import pyarrow.parquet as pq

    arrow = pq.read_table(path)
    raw = (arrow.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise DataError(f"{path}: a Parquet file without medclip metadata (no model identity)", hint=_REWRITE_HINT)
    meta = _meta(path, raw)
    names = arrow.column_names
    for required in ("id", "path", "split", "caption", "image_embedding"):
        if required not in names:
            raise DataError(f"{path}: the embedding file has no {required!r} column", hint=_REWRITE_HINT)
    dim = int(meta["embed_dim"])
    image = _matrix(arrow.column("image_embedding"), dim)
    text = None
    if "text_embedding" in names:
        column = arrow.column("text_embedding")
        text = _matrix(column.fill_null([0.0] * dim) if column.null_count else column, dim)
        text[np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)] = np.nan
    return EmbeddingTable(
        image=image,
        ids=arrow.column("id").to_pylist(),
        paths=arrow.column("path").to_pylist(),
        splits=arrow.column("split").to_pylist(),
        captions=arrow.column("caption").to_pylist(),
        labels={n[len(LABEL_PREFIX):]: arrow.column(n).to_pylist() for n in names if n.startswith(LABEL_PREFIX)},
        identity=meta["model"],
        text=text,
        datasets=list(meta.get("splits", [])),
        skipped=list(meta.get("skipped", [])),
    )


def _matrix(column, dim: int) -> np.ndarray:
    flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return np.array(flat, dtype=np.float32).reshape(-1, dim)


def _read_npz(path: Path) -> EmbeddingTable:
    with np.load(path, allow_pickle=False) as data:
        if "meta" not in data.files:
            raise DataError(f"{path}: an .npz file without medclip metadata (no model identity)", hint=_REWRITE_HINT)
        meta = _meta(path, str(data["meta"]).encode())
        for required in ("id", "path", "split", "caption", "image_embedding"):
            if required not in data.files:
                raise DataError(f"{path}: the embedding file has no {required!r} array", hint=_REWRITE_HINT)
        none_if_empty = lambda values: [str(v) or None for v in values]  # noqa: E731
        return EmbeddingTable(
            image=np.asarray(data["image_embedding"], dtype=np.float32),
            ids=[str(v) for v in data["id"]],
            paths=[str(v) for v in data["path"]],
            splits=[str(v) for v in data["split"]],
            captions=none_if_empty(data["caption"]),
            labels={
                n[len(LABEL_PREFIX):]: none_if_empty(data[n]) for n in data.files if n.startswith(LABEL_PREFIX)
            },
            identity=meta["model"],
            text=np.asarray(data["text_embedding"], dtype=np.float32) if "text_embedding" in data.files else None,
            datasets=list(meta.get("splits", [])),
            skipped=list(meta.get("skipped", [])),
        )


def _meta(path: Path, raw: bytes) -> dict:
    meta = json.loads(raw.decode("utf-8"))
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict) or "embed_dim" not in meta:
        raise DataError(f"{path}: the medclip metadata has no model identity", hint=_REWRITE_HINT)
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise DataError(
            f"{path}: embedding file format {version!r}; this medclip reads format {FORMAT_VERSION}",
            hint=_REWRITE_HINT,
        )
    return meta


def _check(path: Path, table: EmbeddingTable) -> None:
    n = len(table.ids)
    lengths = [len(table.paths), len(table.splits), len(table.captions), *map(len, table.labels.values())]
    if table.image.ndim != 2 or table.image.shape[0] != n or any(length != n for length in lengths):
        raise DataError(f"{path}: the embedding file's columns have different lengths (corrupt)", hint=_REWRITE_HINT)
    if table.text is not None and table.text.shape != table.image.shape:
        raise DataError(f"{path}: image and caption embeddings differ in shape (corrupt)", hint=_REWRITE_HINT)
    if n and not np.isfinite(table.image).all():
        raise DataError(f"{path}: the image embeddings contain NaN or infinite values (corrupt)", hint=_REWRITE_HINT)
    if n and np.abs(np.linalg.norm(table.image[: min(n, 1000)], axis=1) - 1.0).max() > 1e-2:
        raise DataError(f"{path}: the image embeddings are not unit length (not written by medclip embed)", hint=_REWRITE_HINT)


def output_suffix_ok(path: Path) -> bool:
    return path.suffix.lower() in (*PARQUET_SUFFIXES, NPZ_SUFFIX)
