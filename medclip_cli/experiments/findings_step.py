"""An experiment's optional ``[findings]`` step: multi-label findings scored zero-shot with prompt
pairs (``evaluation/multilabel.py``) for the starting model, the fine-tuned one and any compared
models, with bootstrap intervals per finding and macro and paired differences from the first model.

The finding columns and their value convention are ``[data]`` options (``finding_columns``,
``findings_convention``), read for every split like the other columns. ``[findings]`` keys:
``field`` (default: the data set's only multi-label field), ``uncertain`` (ignore / U-Ignore,
positive / U-Ones, negative / U-Zeros), ``blank`` (negative or ignore), ``prompts`` (the prompt
set whose ``[pairs]`` word the findings; default ``evaluate.prompts``), ``threshold_split`` (the
split F1, sensitivity and specificity thresholds are chosen on, never ``data.eval_split``; default
none: the pair's own 0.5) and ``threshold_rule`` (youden or f1). The bootstrap follows
``evaluate.bootstrap`` and the seed's.
"""

from __future__ import annotations

from typing import Any

from medclip_cli.experiments.config import Experiment, ExperimentConfigError

FINDINGS_KEYS = {"field": None, "uncertain": "ignore", "blank": "negative", "prompts": None,
                 "threshold_split": None, "threshold_rule": "youden"}


def findings_settings(experiment: Experiment) -> dict[str, Any] | None:
    """The ``[findings]`` settings with defaults filled in and checked, or None without the section."""
    from medclip_cli.data.findings import BLANK_POLICIES, uncertain_policy
    from medclip_cli.errors import UsageError
    from medclip_cli.evaluation.multilabel import THRESHOLD_RULES

    raw = experiment.settings.get("findings")
    if raw is None:
        return None
    unknown = [k for k in raw if k not in FINDINGS_KEYS]
    if unknown:
        raise ExperimentConfigError(f"{experiment.path}: unknown key findings.{unknown[0]} (known: {', '.join(FINDINGS_KEYS)})")
    settings = {**FINDINGS_KEYS, **raw}
    if settings["prompts"] is None:
        settings["prompts"] = experiment.settings["evaluate"]["prompts"]
    try:
        settings["uncertain"] = uncertain_policy(settings["uncertain"])
    except UsageError as exc:
        raise ExperimentConfigError(f"{experiment.path}: findings.uncertain {settings['uncertain']!r}: {exc.hint}") from None
    if settings["blank"] not in BLANK_POLICIES:
        raise ExperimentConfigError(f"{experiment.path}: findings.blank must be one of {', '.join(BLANK_POLICIES)}")
    if settings["threshold_rule"] not in THRESHOLD_RULES:
        raise ExperimentConfigError(f"{experiment.path}: findings.threshold_rule must be one of {', '.join(THRESHOLD_RULES)}")
    split = settings["threshold_split"]
    if split is not None and str(split).lower() == "none":
        settings["threshold_split"] = None
    elif split == experiment.settings["data"]["eval_split"]:
        raise ExperimentConfigError(
            f"{experiment.path}: findings.threshold_split {split!r} is data.eval_split",
            hint="choose thresholds on another split (e.g. dev) so the evaluated one stays unseen",
        )
    return settings


def check_findings(experiment: Experiment, data_root, eval_set) -> None:
    """Before any work: the settings, the prompt pairs, the field, and the threshold split."""
    from medclip_cli.data.findings import findings_field
    from medclip_cli.evaluation.multilabel import prompt_pairs
    from medclip_cli.evaluation.prompts import load_prompt_set

    settings = findings_settings(experiment)
    if settings is None:
        return
    field = findings_field(eval_set, settings["field"])
    prompt_pairs(field.findings, load_prompt_set(settings["prompts"]).pairs)
    if settings["threshold_split"] is not None:
        _threshold_set(experiment, data_root, settings["threshold_split"])


def _threshold_set(experiment: Experiment, data_root, split: str):
    from medclip_cli.data import load_dataset
    from medclip_cli.errors import DataError

    try:
        return load_dataset(data_root, split, experiment.settings["data"].get("dataset"), **experiment.dataset_options)
    except DataError as exc:
        if "has no split" in exc.message or "has no rows of split" in exc.message:
            raise ExperimentConfigError(
                f"{exc.message}; experiment {experiment.name!r} chooses its findings thresholds on it (findings.threshold_split)",
                hint="pick another with --set findings.threshold_split=NAME, or none",
            ) from exc
        raise


def run_findings_step(experiment: Experiment, sources, eval_set, data_root, device, seed: int, progress=None) -> dict | None:
    """Every model of ``sources`` on the findings of ``eval_set``; ``multilabel.findings_json``
    (models, intervals, paired differences) with the settings used, or None without ``[findings]``."""
    from medclip_cli.evaluation.multilabel import findings_json, run_findings

    settings = findings_settings(experiment)
    if settings is None:
        return None
    split = settings["threshold_split"]
    validation = _threshold_set(experiment, data_root, split) if split is not None else None
    boot = int(experiment.settings["evaluate"]["bootstrap"])
    results = run_findings(
        sources, eval_set, validation=validation, field_name=settings["field"], prompts=settings["prompts"],
        uncertain=settings["uncertain"], blank=settings["blank"], threshold_rule=settings["threshold_rule"],
        batch_size=int(experiment.settings["evaluate"]["batch_size"]), device=device, seed=seed, progress=progress,
        bootstrap=boot,
    )
    return {"split": eval_set.split, "settings": settings, "bootstrap": boot, "seed": seed, **findings_json(results)}


_METRICS = (("auroc", "AUROC"), ("auprc", "AUPRC"), ("f1", "F1"), ("sensitivity", "sensitivity"), ("specificity", "specificity"))


def findings_markdown(findings: dict) -> list[str]:
    """A table per model (each finding and the macro, with 95 % intervals), then each paired
    difference from the first model."""
    s = findings["settings"]
    boot = findings["bootstrap"]
    lines = [
        f"Split `{findings['split']}`; uncertain labels: {s['uncertain']}; blank: {s['blank']}; prompts: {s['prompts']}. "
        + (f"95 % percentile bootstrap intervals ({boot} resamples of the images, seed {findings['seed']}); "
           "a finding with a single class in a resample is skipped there for that metric (count under `undefined_resamples` "
           "in results.json), and the macro skips a resample where one of its findings is undefined." if boot else "Point estimates (bootstrap off)."),
        "",
    ]
    for model in findings["models"]:
        intervals = model.get("intervals", {})
        lines += [f"**{model['label']}** (thresholds: {model['thresholds_from']})", ""]
        lines += ["| finding | labelled | positive | " + " | ".join(n for _, n in _METRICS) + " |", "| --- " * (3 + len(_METRICS)) + "|"]
        for entry in model["metrics"]["per_finding"]:
            own = intervals.get("per_finding", {}).get(entry["finding"], {})
            cells = [_cell(entry[m], own.get(m)) for m, _ in _METRICS]
            lines.append(f"| {entry['finding']} | {entry['n_labelled']} | {entry['n_positive']} | " + " | ".join(cells) + " |")
        macro = [_cell(model["metrics"][f"macro_{m}"], intervals.get("macro", {}).get(m)) for m, _ in _METRICS]
        lines += ["| macro | | | " + " | ".join(macro) + " |", ""]
    for row in findings.get("comparisons", []):
        if not row["same_images"]:
            lines += [f"{row['model']} vs {row['reference']}: not compared (scored on different images).", ""]
            continue
        lines += [f"**{row['model']} − {row['reference']}** (paired bootstrap, same images)", "",
                  "| metric | difference [95 % interval] |", "| --- | --- |"]
        differences = sorted(row.get("differences", {}).items(), key=lambda item: not item[0].startswith("macro_"))  # macro first
        lines += [f"| {name.replace(':', ' ')} | {_cell(d['point'], d, signed=True)} |" for name, d in differences]
        lines.append("")
    return lines


def _cell(value, interval: dict | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    spec = "+.3f" if signed else ".3f"
    if interval and interval.get("low") is not None:
        return f"{value:{spec}} [{interval['low']:{spec}}, {interval['high']:{spec}}]"
    return format(value, spec)
