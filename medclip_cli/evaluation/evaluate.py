"""``evaluate``: zero-shot classification and retrieval of one or more models on one split.

Each model embeds the images once (or reads them from the embedding cache); every task reuses
those features and only embeds its own prompts or captions.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from medclip_cli import __version__
from medclip_cli.data.dataset import Dataset
from medclip_cli.evaluation.embeddings import ImageEmbeddings, embed_images, model_fingerprint
from medclip_cli.evaluation.metrics import classification_metrics
from medclip_cli.evaluation.uncertainty import DEFAULT_RESAMPLES
from medclip_cli.progress import NullProgress, ProgressReporter, loading_model, stage
from medclip_cli.evaluation.prompts import PromptSet, load_prompt_set
from medclip_cli.evaluation.results import EvalResult, ModelResult, TaskResult
from medclip_cli.models.origin import warn_if_random, weights_origin
from medclip_cli.errors import DataError, UsageError

RETRIEVAL = "retrieval"
RETRIEVAL_KS = (1, 5, 10)


@dataclass
class EvalConfig:
    """What to evaluate and how."""

    tasks: list[str] = field(default_factory=list)  # label fields and/or "retrieval"; empty: all
    prompts: str | None = None  # a prompt-set name (configs/prompts) or file; None: the seed's
    batch_size: int = 64
    device: str = "auto"
    seed: int = 0  # seeds torch before each model is built (random-init towers are reproducible)
    cache: bool = True  # read and write image embeddings under MEDCLIP_HOME
    strict: bool = False  # an unreadable image stops the evaluation instead of being skipped
    ks: tuple[int, ...] = RETRIEVAL_KS
    # The load_dataset options the split was read with (which CSV/JSONL columns hold what):
    # recorded in results.json, since the same file read through other columns is other data.
    dataset_options: dict = field(default_factory=dict)
    bootstrap: int = DEFAULT_RESAMPLES  # resamples of the images for each metric's interval; 0: none


@dataclass
class ModelSource:
    """A model to evaluate: a label for tables and a function that builds it (called once)."""

    label: str
    load: Callable[[], object]
    # The --model folder or name it was loaded from; None: built from encoders (whose weights origin
    # is the manifest's tags, and whose random towers are warned about).
    bundle: str | Path | None = None


def resolve_tasks(dataset: Dataset, tasks: Sequence[str]) -> list[str]:
    """The tasks to run, checked against the data set's label fields. When none are named: every
    label field with at least 2 classes and a labelled image, and retrieval if there are captions."""
    known = list(dataset.label_fields) + [RETRIEVAL]
    if not tasks:
        chosen = [
            name
            for name, f in dataset.label_fields.items()
            if len(f.classes) >= 2 and any(s.labels.get(name) in f.classes for s in dataset.samples)
        ]
        if any((s.caption or "").strip() for s in dataset.samples):
            chosen.append(RETRIEVAL)
        if not chosen:
            raise DataError(f"{dataset.root}: split {dataset.split!r} has neither labels nor captions to evaluate")
        return chosen
    chosen = list(dict.fromkeys(tasks))
    unknown = [t for t in chosen if t not in known]
    if unknown:
        raise UsageError(f"--task {unknown[0]!r} is not a task of this data set (tasks: {', '.join(known)})")
    return chosen


def evaluate(
    sources: Sequence[ModelSource],
    dataset: Dataset,
    config: EvalConfig,
    progress: ProgressReporter | None = None,
    calibration: Dataset | None = None,
) -> EvalResult:
    """Evaluate every model in ``sources`` on every task of ``config`` over ``dataset``; with
    ``calibration`` (another split), fit one temperature per model and classification task there
    and report its effect on ``dataset``."""
    import torch

    from medclip_cli.evaluation.calibration import calibrate_model
    from medclip_cli.evaluation.comparison import add_intervals, paired_comparisons
    from medclip_cli.evaluation.uncertainty import LEVEL
    from medclip_cli.runtime.devices import resolve_device

    progress = progress or NullProgress()
    if not sources:
        raise UsageError("no model given", hint="pass --model DIR or --encoder NAME")
    tasks = resolve_tasks(dataset, config.tasks)
    prompt_set = load_prompt_set(config.prompts)
    device = resolve_device(config.device)
    start = time.perf_counter()
    results = []
    for source in sources:
        torch.manual_seed(config.seed)
        with loading_model(progress, source.label):  # seconds for big weights, between two models' stages
            model = source.load().to(device)
        model.module.eval()  # also when the images come from the cache: text towers may have dropout
        if source.bundle is None:
            warn_if_random(model.manifest, source.label)
        result = _evaluate_model(source.label, model, dataset, tasks, prompt_set, config, progress)
        result.weights = weights_origin(model.manifest, source.bundle)
        results.append(result)
        if calibration is not None:
            calibrate_model(results[-1], model, calibration, config, prompt_set, progress)
        del model
    comparisons = []
    if config.bootstrap:
        add_intervals(results, config.bootstrap, config.seed, config.ks)
        comparisons = paired_comparisons(results, config.bootstrap, config.seed, config.ks)
    return EvalResult(
        models=results,
        dataset={
            "format": dataset.format,
            "root": str(dataset.root),
            "split": dataset.split,
            "n_samples": len(dataset),
            "fingerprint": dataset.fingerprint(),
            "options": dict(config.dataset_options),
        },
        prompts=prompt_set.as_dict(),
        config={
            "tasks": tasks,
            "prompts": prompt_set.name,
            "batch_size": config.batch_size,
            "device": str(device),
            "seed": config.seed,
            "cache": config.cache,
            "strict": config.strict,
            "ks": list(config.ks),
            "bootstrap": {"resamples": config.bootstrap, "seed": config.seed, "level": LEVEL, "method": "percentile"}
            if config.bootstrap
            else None,
            "calibrate_on": calibration.split if calibration is not None else None,
        },
        versions=package_versions(),
        seconds=time.perf_counter() - start,
        comparisons=comparisons,
    )


def _evaluate_model(label, model, dataset, tasks, prompt_set, config, progress) -> ModelResult:
    key = model_fingerprint(model)
    embeddings = embed_images(
        model, dataset, batch_size=config.batch_size, cache=config.cache, model_key=key, progress=progress, name=label
    )
    if config.strict and embeddings.skipped:
        _, reason = embeddings.skipped[0]
        more = len(embeddings.skipped) - 1
        raise DataError(
            reason + (f" (and {more} more unreadable images)" if more else ""),
            hint="fix or remove the file, or run without --strict to skip it",
        )
    if not embeddings.indices:
        raise DataError(f"{dataset.root}: none of the {len(dataset)} images of split {dataset.split!r} could be read")
    task_results = {}
    classify = [t for t in tasks if t != RETRIEVAL]
    if classify:  # each task embeds its prompts: seconds for a big text tower and many classes
        what = f"scoring {len(classify)} zero-shot task{'s' if len(classify) > 1 else ''} on {dataset.split}"
        bar = progress.task(stage(what, label), total=len(classify))
        for task in classify:
            task_results[task] = _classification(model, dataset, embeddings, task, prompt_set)
            progress.advance(bar)
        progress.done(bar)
    if RETRIEVAL in tasks:
        task_results[RETRIEVAL] = _retrieval(model, dataset, embeddings, config.ks, progress, label)
    task_results = {t: task_results[t] for t in tasks}  # in the order asked for
    return ModelResult(
        label=label,
        manifest=dict(model.manifest),
        model_key=key,
        logit_scale=model.logit_scale,
        inputs={
            "preprocess": model.preprocess.to_open_clip(),
            "context_length": model.context_length,
            "tokenizer": type(getattr(model.tokenizer, "tokenizer", model.tokenizer)).__name__,
            "scoring": "sigmoid" if model.logit_bias is not None else "softmax",
            "logit_bias": model.logit_bias,
        },
        embeddings_from_cache=embeddings.from_cache,
        embed_seconds=embeddings.seconds,
        n_embedded=len(embeddings.indices),
        skipped_images=embeddings.skipped,
        tasks=task_results,
    )


def _classification(model, dataset: Dataset, embeddings: ImageEmbeddings, task: str, prompt_set: PromptSet) -> TaskResult:
    from medclip_cli.evaluation.zeroshot import build_zero_shot_classifier, class_prompts, zero_shot_logits, zero_shot_probabilities

    label_field = dataset.label_fields[task]
    classes = list(label_field.classes)
    if len(classes) < 2:
        raise DataError(f"task {task!r}: needs at least 2 classes, this split has {len(classes)}")
    names = [label_field.readable_name(c) for c in classes]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise DataError(f"task {task!r}: several classes have the readable name {clashes[0]!r}", hint="edit the label names file")
    index = {c: i for i, c in enumerate(classes)}
    positions = [p for p, i in enumerate(embeddings.indices) if dataset.samples[i].labels.get(task) in index]
    if not positions:
        raise DataError(f"task {task!r}: no image of split {dataset.split!r} has one of its classes ({', '.join(classes)})")
    per_class = prompt_set.for_task(task, label_field)
    classifier = build_zero_shot_classifier(model, names, per_class)
    features = embeddings.features[positions]
    probs = zero_shot_probabilities(features, classifier, model.logit_scale, model.logit_bias).double().cpu().numpy()
    # SigLIP's per-class sigmoids are divided by their sum: the metrics (log loss, calibration) need
    # a distribution; the argmax (accuracy, F1) is unchanged by it.
    probs /= probs.sum(axis=1, keepdims=True)
    logits = zero_shot_logits(features, classifier, model.logit_scale).double().cpu().numpy()
    samples = [dataset.samples[embeddings.indices[p]] for p in positions]
    y_true = [index[s.labels[task]] for s in samples]
    metrics = classification_metrics(y_true, probs, classes)
    rows = [
        {
            "id": s.id,
            "image": _relative(s.image, dataset.root),
            "true": s.labels[task],
            "predicted": classes[int(np.argmax(p))],
            **{f"score_{c}": float(v) for c, v in zip(classes, p)},
        }
        for s, p in zip(samples, probs)
    ]
    return TaskResult(
        task, "classification", metrics, len(positions), len(embeddings.indices) - len(positions),
        classes, names, class_prompts(names, per_class), rows,
        arrays={"ids": [s.id for s in samples], "y_true": np.asarray(y_true), "scores": probs, "logits": logits, "classifier": classifier},
    )


def _retrieval(model, dataset: Dataset, embeddings: ImageEmbeddings, ks, progress, label: str | None = None) -> TaskResult:
    from medclip_cli.evaluation.retrieval import caption_groups, retrieval_metrics, retrieval_ranks

    positions = [p for p, i in enumerate(embeddings.indices) if (dataset.samples[i].caption or "").strip()]
    if not positions:
        raise DataError(f"task 'retrieval': no image of split {dataset.split!r} has a caption")
    samples = [dataset.samples[embeddings.indices[p]] for p in positions]
    captions, owner = caption_groups([s.caption.strip() for s in samples])
    task = progress.task(stage(f"embedding {len(captions)} {dataset.split} captions", label), total=len(captions))
    text_features = model.encode_texts(captions).cpu()
    progress.advance(task, len(captions))
    progress.done(task)
    image_features = embeddings.features[positions]
    rank_i2t, rank_t2i = retrieval_ranks(image_features, text_features, owner)
    metrics = retrieval_metrics(image_features, text_features, owner, ks, ranks=(rank_i2t, rank_t2i))
    metrics["n_captions"] = len(captions)
    rows = [
        {"id": s.id, "image": _relative(s.image, dataset.root), "caption_id": c, "image_to_text_rank": int(r) + 1}
        for s, c, r in zip(samples, owner, rank_i2t.tolist())
    ]
    arrays = {"ids": [s.id for s in samples], "captions": captions, "rank_i2t": rank_i2t.numpy(), "rank_t2i": rank_t2i.numpy()}
    return TaskResult(RETRIEVAL, "retrieval", metrics, len(positions), len(embeddings.indices) - len(positions), rows=rows, arrays=arrays)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"medclip": __version__, "python": platform.python_version()}
    for dist in ("torch", "open_clip_torch", "timm", "scikit-learn", "numpy"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return found

