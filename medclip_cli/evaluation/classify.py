"""Classifying individual image files against free-text labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from medclip_cli.data.images import load_image
from medclip_cli.data.preprocess import normalize_batch, resize_to_uint8
from medclip_cli.progress import NullProgress, ProgressReporter
from medclip_cli.evaluation.zeroshot import build_zero_shot_classifier, zero_shot_probabilities
from medclip_cli.errors import ImageError, ModelError


@dataclass
class ImagePrediction:
    """The labels of one image, most probable first, or the reason it could not be read."""

    image: str
    predictions: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict:
        if self.error is not None:
            return {"image": self.image, "error": self.error}
        return {
            "image": self.image,
            "predictions": [{"label": label, "probability": prob} for label, prob in self.predictions],
        }


def classify_images(
    model,
    images: Sequence[str | Path],
    labels: Sequence[str],
    templates: Sequence[str],
    *,
    top_k: int | None = None,
    window: Sequence[float] | None = None,
    batch_size: int = 32,
    progress: ProgressReporter | None = None,
    temperature: float = 1.0,
) -> list[ImagePrediction]:
    """Probabilities of each label for each image, as the model scores them (its logit scale divided
    by ``temperature``): CLIP's softmax (rows sum to 1) or SigLIP's per-class sigmoid with its
    learned bias."""
    progress = progress or NullProgress()
    model.module.eval()
    classifier = build_zero_shot_classifier(model, labels, templates)
    results = [ImagePrediction(str(path)) for path in images]
    pixels, index = [], []
    task = progress.task("classifying", total=len(results))
    for i, path in enumerate(images):
        try:
            pixels.append(resize_to_uint8(load_image(path, window=window), model.preprocess))
            index.append(i)
        except ImageError as exc:
            results[i].error = str(exc)
            progress.advance(task)
        if len(pixels) == batch_size or (i == len(images) - 1 and pixels):
            _predict(model, classifier, labels, np.stack(pixels), [results[j] for j in index], top_k, temperature)
            progress.advance(task, len(pixels))
            pixels, index = [], []
    progress.done(task)
    return results


def _predict(model, classifier, labels, batch, targets, top_k, temperature) -> None:
    features = model.encode_images(normalize_batch(batch, model.preprocess, device=model.device))
    probs = zero_shot_probabilities(features, classifier, model.logit_scale / temperature, model.logit_bias).cpu().double()
    if model.logit_bias is None:  # a softmax; SigLIP's per-class sigmoids stay as the model scores them
        probs = probs / probs.sum(dim=1, keepdim=True)
    if not bool(probs.isfinite().all()):  # never print nan probabilities as a result
        raise ModelError(
            "the model gave NaN or infinite probabilities (non-finite weights, logit scale or preprocessing)",
            hint="check the model bundle or weights",
        )
    k = len(labels) if top_k is None else min(top_k, len(labels))
    for target, row in zip(targets, probs):
        order = row.argsort(descending=True)[:k].tolist()
        target.predictions = [(labels[j], float(row[j])) for j in order]
