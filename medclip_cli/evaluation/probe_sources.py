"""Where ``probe`` gets its embeddings: models embedded here (through the embedding cache, with
their zero-shot classifiers), or embedding files written by ``medclip embed``."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from medclip_cli.data.dataset import Dataset
from medclip_cli.evaluation.embed_file import EmbeddingTable, check_same_model, read_embedding_file
from medclip_cli.evaluation.probe import METRICS
from medclip_cli.evaluation.probe_run import ProbeSource
from medclip_cli.progress import NullProgress, ProgressReporter, loading_model, stage


def model_probe_source(
    source: dict,
    datasets: Sequence[Dataset],
    tasks: Sequence[str],
    *,
    prompts: str | None = None,
    batch_size: int = 64,
    cache: bool = True,
    device: str = "auto",
    progress: ProgressReporter | None = None,
) -> ProbeSource:
    """Build the model, embed ``datasets`` (cache first) and keep each task's zero-shot classifier."""
    from medclip_cli.models.source import build_from_source, source_label
    from medclip_cli.runtime.devices import resolve_device

    with loading_model(progress, source_label(source)):
        model = build_from_source(source).to(resolve_device(device))
    return probe_source_for_model(
        model, source_label(source), source, datasets, tasks, prompts=prompts, batch_size=batch_size, cache=cache, progress=progress
    )


def probe_source_for_model(
    model,
    label: str,
    source: dict,
    datasets: Sequence[Dataset],
    tasks: Sequence[str],
    *,
    prompts: str | None = None,
    batch_size: int = 64,
    cache: bool = True,
    progress: ProgressReporter | None = None,
) -> ProbeSource:
    """Embed ``datasets`` with a built ``model`` and keep each task's zero-shot classifier."""
    from medclip_cli.evaluation.embed_file import model_identity
    from medclip_cli.evaluation.export import embed_datasets

    progress = progress or NullProgress()
    model.module.eval()
    table, _ = embed_datasets(
        model, model_identity(model, label, source), datasets, captions=False, batch_size=batch_size, cache=cache, progress=progress
    )
    # Each task's prompts embedded by the model's text tower: seconds for a big one.
    what = f"zero-shot classifiers of {len(tasks)} task{'s' if len(tasks) != 1 else ''}"
    bar = progress.task(stage(what, label), total=len(tasks))
    classifiers = {}
    for task in tasks:
        classifiers[task] = _zero_shot_classifier(model, datasets, task, prompts)
        progress.advance(bar)
    progress.done(bar)
    scale = model.logit_scale

    def zero_shot(task: str, classes: list[str], rows: EmbeddingTable) -> dict | None:
        found = classifiers.get(task)
        if found is None:
            return None
        weights, known = found
        columns = [known.index(c) for c in classes]
        return zero_shot_metrics(rows.image, weights[:, columns], scale, rows.labels[task], classes)

    return ProbeSource(label, table, zero_shot)


def _zero_shot_classifier(model, datasets: Sequence[Dataset], task: str, prompts: str | None):
    from medclip_cli.evaluation.prompts import load_prompt_set
    from medclip_cli.evaluation.zeroshot import build_zero_shot_classifier

    label_field = next((d.label_fields[task] for d in datasets if task in d.label_fields), None)
    if label_field is None or not label_field.classes:
        return None
    classes = list(label_field.classes)
    names = [label_field.readable_name(c) for c in classes]
    per_class = load_prompt_set(prompts).for_task(task, label_field)
    weights = build_zero_shot_classifier(model, names, {n: per_class[n] for n in names})
    return weights.float().cpu().numpy(), classes


def zero_shot_metrics(features: np.ndarray, weights: np.ndarray, scale: float, labels, classes: list[str]) -> dict:
    """Zero-shot metrics on ``features`` with class weights ``[D, C]`` (softmax of scaled cosines)."""
    from medclip_cli.evaluation.metrics import classification_metrics

    logits = scale * (features.astype(np.float64) @ weights.astype(np.float64))
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    index = {c: i for i, c in enumerate(classes)}
    full = classification_metrics([index[v] for v in labels], probs, classes)
    return {m: full[m] for m in METRICS}


def file_probe_source(paths: Sequence[str | Path]) -> ProbeSource:
    """All ``--embeddings`` files as one model's table (they must share its identity)."""
    tables = [read_embedding_file(p) for p in paths]
    check_same_model([(str(p), t.identity) for p, t in zip(paths, tables)])
    merged = tables[0] if len(tables) == 1 else _concat(tables)
    return ProbeSource(str(merged.identity.get("name") or Path(paths[0]).stem), merged, None)


def _concat(tables: list[EmbeddingTable]) -> EmbeddingTable:
    fields = list(dict.fromkeys(f for t in tables for f in t.labels))
    first = tables[0]
    return EmbeddingTable(
        image=np.concatenate([t.image for t in tables]),
        ids=[i for t in tables for i in t.ids],
        paths=[p for t in tables for p in t.paths],
        splits=[s for t in tables for s in t.splits],
        captions=[c for t in tables for c in t.captions],
        labels={f: [v for t in tables for v in t.labels.get(f, [None] * len(t))] for f in fields},
        identity=first.identity,
        text=None,
        datasets=[d for t in tables for d in t.datasets],
        skipped=[s for t in tables for s in t.skipped],
    )
