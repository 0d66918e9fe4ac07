"""Multi-label findings, zero-shot: one positive/negative prompt pair per finding (CheXzero).

Each finding is scored on its own: the image's scaled cosine similarity to the positive prompt(s)
and to the negative prompt(s), softmax over the two, and the positive side is the finding's
probability. Metrics per finding and their macro mean: AUROC, AUPRC (average precision), and F1,
sensitivity and specificity at a threshold chosen on a *validation* split (Youden's J or best F1),
never on the evaluated one; without a validation split the pair's own decision boundary (0.5) is
used and said so. Every number is a scikit-learn function of (labels, probabilities).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from medclip_cli.data.findings import FindingsField, label_matrix
from medclip_cli.errors import DataError, UsageError
from medclip_cli.evaluation.zeroshot import PLACEHOLDERS, fill_template

#: CheXzero's pair: "{finding}" against "no {finding}".
DEFAULT_PAIR = (("{}",), ("no {}",))
THRESHOLD_RULES = ("youden", "f1")
FIXED_THRESHOLD = 0.5  # the pair's own boundary: positive prompt more similar than the negative


@dataclass(frozen=True)
class PromptPair:
    """The filled positive and negative prompts of one finding."""

    positive: tuple[str, ...]
    negative: tuple[str, ...]


def prompt_pairs(findings: Sequence[str], pairs: Mapping | None = None) -> dict[str, PromptPair]:
    """Each finding's prompt pair from a prompt set's ``[pairs]`` table (or CheXzero's default).

    ``pairs`` holds ``positive`` and ``negative`` template lists (``{}`` is the finding) and, under
    ``findings.NAME``, per-finding ``positive``/``negative`` lists (templates or literal prompts).
    """
    pairs = dict(pairs or {})
    unknown = sorted(set(pairs) - {"positive", "negative", "findings"})
    if unknown:
        raise UsageError(f"prompt pairs: unknown key {unknown[0]!r} (expected positive, negative, findings)")
    default_pos = _prompt_list(pairs.get("positive", DEFAULT_PAIR[0]), "pairs.positive")
    default_neg = _prompt_list(pairs.get("negative", DEFAULT_PAIR[1]), "pairs.negative")
    own = pairs.get("findings", {})
    if not isinstance(own, Mapping):
        raise UsageError("prompt pairs: 'findings' must map finding names to positive/negative lists")
    result = {}
    for name in findings:
        table = own.get(name, {})
        if not isinstance(table, Mapping) or set(table) - {"positive", "negative"}:
            raise UsageError(f"prompt pairs: [pairs.findings.{name}] may only hold 'positive' and 'negative'")
        pos = _prompt_list(table["positive"], f"pairs.findings.{name}.positive") if "positive" in table else default_pos
        neg = _prompt_list(table["negative"], f"pairs.findings.{name}.negative") if "negative" in table else default_neg
        result[name] = PromptPair(tuple(_fill(t, name) for t in pos), tuple(_fill(t, name) for t in neg))
    return result


def _prompt_list(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise UsageError(f"prompt pairs: {where} must be a non-empty list of strings")
    return tuple(value)


def _fill(template: str, finding: str) -> str:
    return fill_template(template, finding) if any(p in template for p in PLACEHOLDERS) else template


def finding_probabilities(model, image_features, pairs: Mapping[str, PromptPair]) -> np.ndarray:
    """``[n_images, n_findings]``: each finding's softmax over its (positive, negative) pair."""
    import torch

    from medclip_cli.evaluation.zeroshot import build_zero_shot_classifier, zero_shot_probabilities

    columns = []
    with torch.no_grad():
        for pair in pairs.values():
            classifier = build_zero_shot_classifier(model, ["+", "-"], {"+": pair.positive, "-": pair.negative})
            probs = zero_shot_probabilities(image_features, classifier, model.logit_scale)
            columns.append(probs[:, 0].double().cpu().numpy())
    return np.stack(columns, axis=1) if columns else np.zeros((len(image_features), 0))


# --- metrics ------------------------------------------------------------------------------------


def choose_thresholds(y: np.ndarray, mask: np.ndarray, scores: np.ndarray, rule: str = "youden") -> list[float | None]:
    """Per finding, the threshold on ``scores`` that maximises Youden's J (sensitivity +
    specificity − 1) or F1 on these (validation) labels; None where a finding has one class only."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    if rule not in THRESHOLD_RULES:
        raise UsageError(f"--threshold-rule {rule!r}: use one of {', '.join(THRESHOLD_RULES)}")
    thresholds: list[float | None] = []
    for j in range(y.shape[1]):
        keep = mask[:, j] > 0
        truth, score = y[keep, j], scores[keep, j]
        if truth.size == 0 or truth.min() == truth.max():
            thresholds.append(None)
            continue
        if rule == "youden":
            fpr, tpr, cuts = roc_curve(truth, score)
            best = int(np.argmax(tpr - fpr))
            thresholds.append(float(min(cuts[best], 1.0)))  # roc_curve's first cut is +inf
        else:
            precision, recall, cuts = precision_recall_curve(truth, score)
            f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0)
            thresholds.append(float(cuts[int(np.argmax(f1[:-1]))]))
    return thresholds


def multilabel_metrics(
    y: np.ndarray, mask: np.ndarray, scores: np.ndarray, findings: Sequence[str], thresholds: Sequence[float | None]
) -> dict:
    """Per-finding AUROC, AUPRC, and F1/sensitivity/specificity at ``thresholds`` (a score at or
    above the threshold is positive), with macro means over the findings where each is defined."""
    from sklearn.metrics import average_precision_score, confusion_matrix, f1_score, roc_auc_score

    per_finding = []
    for j, name in enumerate(findings):
        keep = mask[:, j] > 0
        truth, score = y[keep, j].astype(int), scores[keep, j]
        n_pos = int(truth.sum())
        both = 0 < n_pos < truth.size
        threshold = thresholds[j] if thresholds[j] is not None else FIXED_THRESHOLD
        entry = {
            "finding": name,
            "n_labelled": int(truth.size),
            "n_positive": n_pos,
            "auroc": float(roc_auc_score(truth, score)) if both else None,
            "auprc": float(average_precision_score(truth, score)) if n_pos > 0 else None,
            "threshold": float(threshold),
            "f1": None,
            "sensitivity": None,
            "specificity": None,
        }
        if truth.size:
            predicted = (score >= threshold).astype(int)
            tn, fp, fn, tp = confusion_matrix(truth, predicted, labels=[0, 1]).ravel()
            entry["f1"] = float(f1_score(truth, predicted, labels=[0, 1], zero_division=0)) if n_pos > 0 else None
            entry["sensitivity"] = float(tp / (tp + fn)) if tp + fn else None
            entry["specificity"] = float(tn / (tn + fp)) if tn + fp else None
        per_finding.append(entry)
    macro = {f"macro_{k}": _mean([e[k] for e in per_finding]) for k in ("auroc", "auprc", "f1", "sensitivity", "specificity")}
    return {"n_images": int(len(y)), "n_findings": len(findings), **macro, "per_finding": per_finding}


def _mean(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(defined)) if defined else None


# --- a model on a split --------------------------------------------------------------------------


@dataclass
class FindingsResult:
    """One model's multi-label result on one split."""

    field: str
    metrics: dict
    thresholds_from: str  # "validation split 'dev' (youden)" or "fixed 0.5 (no validation split)"
    uncertain: str
    blank: str
    prompts: dict[str, dict[str, list[str]]]
    rows: list[dict] = field(default_factory=list)  # predictions_findings.csv
    # Bootstrap (findings_uncertainty.py): flat metric name ("macro_auroc", "auroc:CT") -> Interval,
    # and the replicates they came from (kept for paired comparisons, not written).
    intervals: dict = field(default_factory=dict)
    replicates: dict = field(default_factory=dict, repr=False)
    image_ids: list[str] = field(default_factory=list, repr=False)

    def to_json(self) -> dict:
        from medclip_cli.evaluation.findings_uncertainty import nested

        out = {
            "kind": "multilabel",
            "field": self.field,
            "uncertain": self.uncertain,
            "blank": self.blank,
            "thresholds_from": self.thresholds_from,
            "metrics": self.metrics,
            "prompts": self.prompts,
        }
        if self.intervals:
            out["intervals"] = nested(self.intervals)
        return out

    def cell(self, name: str) -> object:
        """``0.914 [0.876, 0.947]`` when ``name`` (flat, e.g. ``auroc:CT``) has an interval, else the value."""
        from medclip_cli.evaluation.findings_uncertainty import flat_metrics

        interval = self.intervals.get(name)
        return interval.format() if interval is not None and interval.low is not None else flat_metrics(self.metrics).get(name)


def score_split(model, dataset, pairs, *, batch_size=64, cache=True, model_key=None, progress=None, name=None):
    """``(indices, probabilities)`` of the readable images of ``dataset`` (``name``: the model's, for the progress stage)."""
    from medclip_cli.evaluation.embeddings import embed_images

    embeddings = embed_images(model, dataset, batch_size=batch_size, cache=cache, model_key=model_key, progress=progress, name=name)
    if not embeddings.indices:
        raise DataError(f"{dataset.root}: none of the {len(dataset)} images of split {dataset.split!r} could be read")
    return embeddings, finding_probabilities(model, embeddings.features, pairs)


def evaluate_findings(
    model,
    dataset,
    findings: FindingsField,
    *,
    pairs_table: Mapping | None = None,
    validation=None,
    uncertain: str = "ignore",
    blank: str = "negative",
    threshold_rule: str = "youden",
    batch_size: int = 64,
    cache: bool = True,
    model_key: str | None = None,
    progress=None,
    bootstrap: int = 0,
    seed: int = 0,
    name: str | None = None,
) -> FindingsResult:
    """Zero-shot multi-label metrics of ``model`` on ``dataset``; thresholds from ``validation``;
    with ``bootstrap`` resamples of the images, a 95 % interval for every metric."""
    pairs = prompt_pairs(findings.findings, pairs_table)
    kw = dict(batch_size=batch_size, cache=cache, model_key=model_key, progress=progress, name=name)
    embeddings, probs = score_split(model, dataset, pairs, **kw)
    y, mask = label_matrix(dataset, findings, embeddings.indices, uncertain=uncertain, blank=blank)
    if validation is not None:
        if validation.split == dataset.split and validation.root == dataset.root:
            raise UsageError(
                f"--threshold-split {validation.split!r} is the evaluated split",
                hint="choose thresholds on another split (e.g. dev) so the evaluated one stays unseen",
            )
        val_field = findings_field_like(validation, findings)
        val_embeddings, val_probs = score_split(model, validation, pairs, **kw)
        vy, vmask = label_matrix(validation, val_field, val_embeddings.indices, uncertain=uncertain, blank=blank)
        thresholds = choose_thresholds(vy, vmask, val_probs, threshold_rule)
        source = f"validation split {validation.split!r} ({threshold_rule})"
    else:
        thresholds = [None] * len(findings.findings)
        source = f"fixed {FIXED_THRESHOLD} (no validation split)"
    metrics = multilabel_metrics(y, mask, probs, findings.findings, thresholds)
    found, replicates = {}, {}
    if bootstrap and len(y):
        from medclip_cli.evaluation.findings_uncertainty import findings_intervals

        used = [e["threshold"] for e in metrics["per_finding"]]
        found, replicates = findings_intervals(y, mask, probs, findings.findings, used, metrics, bootstrap, seed)
    rows = []
    for p, i in enumerate(embeddings.indices):
        sample = dataset.samples[i]
        row = {"id": sample.id, "image": str(sample.image)}
        for j, name in enumerate(findings.findings):
            row[f"true_{name}"] = int(y[p, j]) if mask[p, j] else ""
            row[f"prob_{name}"] = float(probs[p, j])
        rows.append(row)
    return FindingsResult(
        findings.name, metrics, source, uncertain, blank,
        {n: {"positive": list(pr.positive), "negative": list(pr.negative)} for n, pr in pairs.items()}, rows,
        found, replicates, [dataset.samples[i].id for i in embeddings.indices],
    )


def findings_field_like(dataset, reference: FindingsField) -> FindingsField:
    """The validation split's field of the same name, with the same findings."""
    other = (getattr(dataset, "multilabel_fields", {}) or {}).get(reference.name)
    if other is None or tuple(other.findings) != tuple(reference.findings):
        raise DataError(f"{dataset.root}: split {dataset.split!r} lacks the findings {', '.join(reference.findings)}")
    return other


# --- several models, and the files ---------------------------------------------------------------


def run_findings(
    sources,
    dataset,
    *,
    validation=None,
    field_name: str | None = None,
    prompts: str | None = None,
    uncertain: str = "ignore",
    blank: str = "negative",
    threshold_rule: str = "youden",
    batch_size: int = 64,
    device: str = "auto",
    seed: int = 0,
    cache: bool = True,
    progress=None,
    bootstrap: int = 0,
) -> list[tuple[str, FindingsResult]]:
    """:func:`evaluate_findings` for every model of ``sources`` (``evaluate.ModelSource``); the
    bootstrap is seeded by ``seed``, so every model is resampled on the same images."""
    import torch

    from medclip_cli.data.findings import findings_field, uncertain_policy
    from medclip_cli.evaluation.embeddings import model_fingerprint
    from medclip_cli.evaluation.prompts import load_prompt_set
    from medclip_cli.progress import loading_model
    from medclip_cli.runtime.devices import resolve_device

    findings = findings_field(dataset, field_name)
    uncertain = uncertain_policy(uncertain)
    pairs_table = load_prompt_set(prompts).pairs
    prompt_pairs(findings.findings, pairs_table)  # bad prompt files fail before any model is built
    target = resolve_device(device)
    results = []
    for source in sources:
        torch.manual_seed(seed)
        with loading_model(progress, source.label):
            model = source.load().to(target)
        model.module.eval()
        result = evaluate_findings(
            model, dataset, findings, pairs_table=pairs_table, validation=validation, uncertain=uncertain,
            blank=blank, threshold_rule=threshold_rule, batch_size=batch_size, cache=cache,
            model_key=model_fingerprint(model), progress=progress, bootstrap=bootstrap, seed=seed, name=source.label,
        )
        results.append((source.label, result))
        del model
    return results


def findings_json(results: list[tuple[str, FindingsResult]]) -> dict:
    """Every model's result and, with several, each one's paired differences from the first."""
    from medclip_cli.evaluation.findings_uncertainty import paired_findings

    out: dict = {"models": [{"label": label, **r.to_json()} for label, r in results]}
    if len(results) > 1 and results[0][1].replicates:
        (ref_label, ref), comparisons = results[0], []
        for label, r in results[1:]:
            row = {"reference": ref_label, "model": label, "same_images": r.image_ids == ref.image_ids}
            if row["same_images"] and r.replicates:
                row["differences"] = {k: iv.to_json() for k, iv in paired_findings(ref, r).items()}
            comparisons.append(row)
        out["comparisons"] = comparisons
    return out


def write_findings_outputs(results: list[tuple[str, FindingsResult]], dataset, output) -> list:
    """``results_findings.json`` and ``predictions_findings.csv`` under ``output`` (atomic writes)."""
    import json
    from pathlib import Path

    from medclip_cli.evaluation.outputs import csv_text, write_file

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    several = len(results) > 1
    payload = {
        "dataset": {"format": dataset.format, "root": str(dataset.root), "split": dataset.split, "fingerprint": dataset.fingerprint()},
        **findings_json(results),
    }
    rows = [{"model": label, **row} if several else row for label, r in results for row in r.rows]
    return [
        write_file(output / "results_findings.json", json.dumps(payload, indent=2) + "\n"),
        write_file(output / "predictions_findings.csv", csv_text(rows)),
    ]
