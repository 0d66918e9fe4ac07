"""Calibration: temperature scaling, ECE, Brier score, NLL and the reliability diagram.

CLIP's probabilities are a softmax of ``logit_scale · cos`` with a scale learned for contrastive
training, not for calibrated class probabilities. Temperature scaling (Guo et al. 2017) fits one
scalar T on a held-out split by minimising the negative log-likelihood of softmax(logits / T);
it never changes a prediction, only how confident it is. ECE uses 15 equal-width confidence bins,
Σ_b (n_b / N) · |accuracy_b − confidence_b|, with bin b holding confidences in (b/15, (b+1)/15].
The Brier score is the multi-class one (Brier 1950): the mean over images of Σ_c (p_c − y_c)².
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from medclip_cli.atomic import save_png

ECE_BINS = 15
#: Temperatures searched (log-uniform bounds): far wider than any useful value.
T_BOUNDS = (1e-2, 1e2)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, y_true: Sequence[int], temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes under softmax(logits / T)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    y = np.asarray(y_true, dtype=int)
    return float(np.mean(log_norm - z[np.arange(len(y)), y]))


def fit_temperature(logits: np.ndarray, y_true: Sequence[int]) -> float:
    """The T minimising :func:`nll` (a bounded 1-D search over log T)."""
    from scipy.optimize import minimize_scalar

    if len(y_true) == 0:
        raise ValueError("no images to fit a temperature on")
    lo, hi = np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1])
    result = minimize_scalar(lambda log_t: nll(logits, y_true, float(np.exp(log_t))), bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


def brier(probs: np.ndarray, y_true: Sequence[int]) -> float:
    probs = np.asarray(probs, dtype=np.float64)
    onehot = np.eye(probs.shape[1])[np.asarray(y_true, dtype=int)]
    return float(np.mean(((probs - onehot) ** 2).sum(axis=1)))


def reliability_bins(probs: np.ndarray, y_true: Sequence[int], bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per equal-width confidence bin: image count, accuracy and mean confidence (NaN when empty)."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y_true, dtype=int)).astype(np.float64)
    # Bin b holds (b/bins, (b+1)/bins]; a confidence of exactly 0 cannot happen for a softmax row.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore"):
        accuracy = np.bincount(which, weights=correct, minlength=bins) / count
        mean_conf = np.bincount(which, weights=confidence, minlength=bins) / count
    return {"count": count, "accuracy": accuracy, "confidence": mean_conf}


def ece(probs: np.ndarray, y_true: Sequence[int], bins: int = ECE_BINS) -> float:
    b = reliability_bins(probs, y_true, bins)
    filled = b["count"] > 0
    return float(np.sum(b["count"][filled] / b["count"].sum() * np.abs(b["accuracy"][filled] - b["confidence"][filled])))


def calibration_metrics(logits: np.ndarray, y_true: Sequence[int], temperature: float = 1.0) -> dict[str, float]:
    probs = softmax(logits, temperature)
    return {"ece": ece(probs, y_true), "brier": brier(probs, y_true), "nll": nll(logits, y_true, temperature)}


def calibrate_task(cal_logits: np.ndarray, cal_y: Sequence[int], logits: np.ndarray, y_true: Sequence[int], split: str) -> dict:
    """Fit T on (``cal_logits``, ``cal_y``) from ``split``; measure before and after on the
    evaluated (``logits``, ``y_true``)."""
    temperature = fit_temperature(cal_logits, cal_y)
    return {
        "fitted_on": split,
        "n_fit_images": int(len(cal_y)),
        "temperature": temperature,
        # T at an end of the search: the scores carry (almost) no information about the classes.
        "at_search_bound": bool(temperature > 0.99 * T_BOUNDS[1] or temperature < 1.01 * T_BOUNDS[0]),
        "bins": ECE_BINS,
        "before": calibration_metrics(logits, y_true),
        "after": calibration_metrics(logits, y_true, temperature),
    }


def calibrate_model(model_result, model, dataset, config, prompt_set, progress) -> None:
    """Fit and measure a temperature for every classification task of ``model_result`` (an
    ``evaluate.ModelResult``), on the calibration split ``dataset``; sets ``task.calibration``."""
    from medclip_cli.errors import DataError
    from medclip_cli.evaluation.embeddings import embed_images
    from medclip_cli.evaluation.zeroshot import zero_shot_logits

    embeddings = embed_images(
        model, dataset, batch_size=config.batch_size, cache=config.cache, model_key=model_result.model_key, progress=progress,
        name=model_result.label,
    )
    for name, task in model_result.tasks.items():
        if task.kind != "classification":
            continue
        index = {c: i for i, c in enumerate(task.classes)}
        positions = [p for p, i in enumerate(embeddings.indices) if dataset.samples[i].labels.get(name) in index]
        if not positions:
            raise DataError(
                f"--calibrate-on {dataset.split}: no image of that split has one of task {name!r}'s classes",
                hint="calibrate on a split labelled like the evaluated one",
            )
        y = [index[dataset.samples[embeddings.indices[p]].labels[name]] for p in positions]
        logits = zero_shot_logits(embeddings.features[positions], task.arrays["classifier"], model.logit_scale).double().cpu().numpy()
        task.calibration = calibrate_task(logits, y, task.arrays["logits"], task.arrays["y_true"], dataset.split)


def save_reliability_png(logits: np.ndarray, y_true: Sequence[int], temperature: float, path: str | Path, title: str = "") -> Path:
    """Reliability diagram (accuracy against confidence per bin) before and after scaling by T."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5, 5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for t, label, marker in ((1.0, "as scored", "o"), (temperature, f"T = {temperature:.3g}", "s")):
        b = reliability_bins(softmax(logits, t), y_true)
        filled = b["count"] > 0
        error = ece(softmax(logits, t), y_true)
        axes.plot(b["confidence"][filled], b["accuracy"][filled], marker=marker, label=f"{label} (ECE {error:.3f})")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (top-1 probability)")
    axes.set_ylabel("accuracy")
    axes.legend(loc="upper left")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    return save_png(figure, path)
