"""Multi-label findings at validation: each epoch, every finding scored zero-shot with its prompt
pair (CheXpert-style labels, ``evaluation/multilabel.py``), and the macro AUROC and AUPRC that
``--select-metric findings_macro_auroc`` can choose ``best/`` on.

The labels are the validation split's own (``--finding-columns`` of a CSV/JSONL manifest, or a
format's multi-label field), read with the run's uncertainty policy; blank counts as negative, as
in ``evaluate``. A finding with a single class among the validation images has no AUROC and is
left out of the macro; with none left the macro is undefined (NaN) and never selects.
"""

from __future__ import annotations

import math

#: The metrics validation adds when findings are validated (``training/config.py`` lists them).
FINDINGS_METRICS = ("findings_macro_auroc", "findings_macro_auprc")


def findings_metric_names(findings: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Every metrics.jsonl key of findings validation: the macros, then one AUROC per finding."""
    return [*FINDINGS_METRICS, *(f"findings_auroc:{name}" for name in findings)]


def findings_labels(data, dataset, field_name: str, uncertain: str):
    """``(field, y, mask)`` of the validation pairs; a bad value fails here, before training."""
    from medclip_cli.data.findings import findings_field, labels_matrix

    field = findings_field(dataset, field_name)
    ids = data.ids or [str(k) for k in range(len(data))]
    y, mask = labels_matrix(data.labels, field, ids, dataset.root, uncertain=uncertain)
    return field, y, mask


def findings_record(model, image_features, data, dataset, cfg) -> dict[str, float]:
    """The findings metrics of one validation pass over ``image_features`` (one row per pair)."""
    from medclip_cli.evaluation.multilabel import finding_probabilities, multilabel_metrics, prompt_pairs
    from medclip_cli.evaluation.prompts import load_prompt_set

    field, y, mask = findings_labels(data, dataset, cfg.val_findings, cfg.findings_uncertain)
    pairs = prompt_pairs(field.findings, load_prompt_set(cfg.findings_prompts).pairs)
    probs = finding_probabilities(model, image_features, pairs)
    metrics = multilabel_metrics(y, mask, probs, field.findings, [None] * len(field.findings))
    record = {name: _number(metrics[name[len("findings_"):]]) for name in FINDINGS_METRICS}
    for entry in metrics["per_finding"]:
        record[f"findings_auroc:{entry['finding']}"] = _number(entry["auroc"])
    return record


def _number(value: float | None) -> float:
    return float("nan") if value is None or math.isnan(value) else float(value)
