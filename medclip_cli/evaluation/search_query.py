"""``search``: a text or an example image -> the nearest images of an embedding file.

The query is embedded by the model that made the file: the one named with ``--model/--encoder``
or, by default, the one the file's identity describes, built again. Either way its weights and
preprocessing must match the file's (the same check as when files are combined).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medclip_cli.errors import UsageError
from medclip_cli.evaluation.embed_file import EmbeddingTable, check_same_model, model_identity
from medclip_cli.evaluation.search import nearest


@dataclass
class Hit:
    rank: int
    score: float
    id: str
    path: str
    split: str
    labels: dict
    caption: str | None

    def as_dict(self) -> dict:
        return {
            "rank": self.rank, "score": self.score, "id": self.id, "path": self.path, "split": self.split,
            "labels": self.labels, "caption": self.caption,
        }


def query_model(table: EmbeddingTable, source: dict | None, where: str, device: str = "auto"):
    """The model that embeds queries for ``table``, checked to be the model that made it."""
    from medclip_cli.models.source import build_from_source, source_label
    from medclip_cli.runtime.devices import resolve_device

    source = source or table.identity.get("source")
    if not isinstance(source, dict) or not source:
        raise UsageError(f"{where}: the file does not say how to build its model", hint="pass --model DIR or --encoder NAME")
    model = build_from_source(source).to(resolve_device(device))
    model.module.eval()
    check_same_model([(where, table.identity), ("the query model", model_identity(model, source_label(source), source))])
    return model


def text_query(model, text: str) -> np.ndarray:
    if not text.strip():
        raise UsageError("the query text is empty", hint='pass a text such as "axial CT of the chest", or --image FILE')
    return model.encode_texts([text]).float().cpu().numpy()[0]


def image_query(model, path: Path) -> np.ndarray:
    from medclip_cli.data.images import load_image
    from medclip_cli.data.preprocess import normalize_batch, resize_to_uint8

    pixels = resize_to_uint8(load_image(path), model.preprocess)[None]
    return model.encode_images(normalize_batch(pixels, model.preprocess, device=model.device)).float().cpu().numpy()[0]


def search_table(table: EmbeddingTable, query: np.ndarray, k: int, backend: str = "auto") -> tuple[list[Hit], str]:
    """The ``k`` rows of ``table`` nearest to the unit-length ``query``, best first."""
    if not len(table):
        raise UsageError("the embedding file has no rows to search")
    found = nearest(table.image, query[None], k, backend)
    hits = []
    for rank, (row, score) in enumerate(zip(found.indices[0].tolist(), found.scores[0].tolist()), start=1):
        labels = {name: values[row] for name, values in table.labels.items() if values[row] is not None}
        hits.append(Hit(rank, float(score), table.ids[row], table.paths[row], table.splits[row], labels, table.captions[row]))
    return hits, found.backend
