"""``report.md``: what was run, with which data and versions, and what it measured."""

from __future__ import annotations

from pathlib import Path

from medclip_cli.experiments.runner import BASELINE, FINETUNED, ExperimentRun

#: Tasks with more classes than this get no per-class table (it would swamp the report).
PER_CLASS_MAX = 30


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _diff(value) -> str:
    return "—" if value is None else f"{value:+.4f}"


def cell(row: dict, key: str, signed: bool = False) -> str:
    """A comparison row's value: ``0.914 [0.876, 0.947]`` (one seed, 95 % bootstrap interval;
    the difference's is paired) or ``0.914 ± 0.012`` (mean ± sd over several seeds)."""
    value = row[key]
    if value is None:
        return "—"
    spec = "+.3f" if signed else ".3f"
    per_seed = row.get("per_seed") or []
    if len(per_seed) > 1:
        sd = (row.get("sd") or {}).get(key)
        return f"{value:{spec}} ± {sd:.3f}" if sd is not None else format(value, spec)
    interval = per_seed[0]["intervals"].get(key) if per_seed else None
    if interval and interval.get("low") is not None:
        return f"{value:{spec}} [{interval['low']:{spec}}, {interval['high']:{spec}}]"
    return format(value, spec)


def comparison_markdown(run: ExperimentRun) -> str:
    others = [m.label for m in run.evaluation.models if m.label not in (BASELINE, FINETUNED)]
    head = "".join(f" {label} |" for label in others)
    lines = [
        f"| task | metric | the fine-tuned model saw | {BASELINE} | {FINETUNED} | difference |{head}",
        "| --- | --- | --- | ---: | ---: | ---: |" + " ---: |" * len(others),
    ]
    for row in run.comparison():
        cells = "".join(f" {cell(row, label)} |" for label in others)
        lines.append(
            f"| {row['task']} | {row['metric']} | {row.get('supervision') or '—'} | {cell(row, BASELINE)} | {cell(row, FINETUNED)} | {cell(row, 'difference', True)} |{cells}"
        )
    return "\n".join(lines)


def honesty_markdown(run: ExperimentRun) -> list[str]:
    """What the fine-tuned model saw of each task, and where its hyperparameters were chosen."""
    exp = run.experiment
    if exp.finetune is None:
        return ["Every task is zero-shot: the model is evaluated as it comes, without training.", ""]
    from medclip_cli.experiments.results import supervision

    kinds = supervision(exp)
    fields = list(exp.finetune.get("label_text_fields") or [])
    lines = []
    supervised = [t for t, k in kinds.items() if k == "label-supervised"]
    zero = [t for t, k in kinds.items() if k == "zero-shot"]
    if supervised:
        lines.append(
            f"- **label-supervised**: {', '.join(supervised)}. Fine-tuning showed the model these labels as training text "
            f"(`label_text_fields = {fields}`, with probability {exp.finetune.get('label_text_prob', '?')} per caption), "
            "so the fine-tuned figures on these tasks are supervised classification, not zero-shot."
        )
    if zero:
        lines.append(f"- **zero-shot**: {', '.join(zero)}. Training never saw these labels; it learnt from captions only.")
    train_split = exp.settings["data"]["train_split"]
    measured = run.evaluation.dataset["split"]
    if "retrieval" in kinds:
        lines.append(f"- retrieval: trained on split `{train_split}`'s image–caption pairs, measured on split `{measured}`'s.")
    if str(train_split) == str(measured):
        lines.append(
            f"- **trained and measured on the same split** (`{measured}`): every figure after fine-tuning is a training-set figure, not a held-out one."
        )
    lines.append("- the baseline column is the starting model before any fine-tuning.")
    tuned = exp.settings["experiment"].get("tuned_on")
    if tuned:
        note = (
            " — the same split as the results: they are optimistic, not a held-out estimate"
            if str(tuned) == str(measured)
            else ""
        )
        lines.append(f"- hyperparameters chosen on split `{tuned}`; results measured on split `{measured}`{note}.")
    else:
        lines.append(f"- where the hyperparameters were chosen is not stated in the config; results measured on split `{measured}`.")
    return lines + [""]


def paired_markdown(run: ExperimentRun) -> list[str]:
    """The exact McNemar verdict (and whether the paired interval excludes 0) for each task and seed."""
    lines = []
    for row in run.comparison():
        for seed_row in row.get("per_seed", []):
            test = seed_row.get("mcnemar")
            if not test:
                continue
            verdict = "significant at 0.05" if test["significant_at_0.05"] else "not significant at 0.05"
            diff = seed_row["intervals"].get("difference")
            interval = ""
            if diff and diff.get("low") is not None:
                excludes = diff["low"] > 0 or diff["high"] < 0
                interval = f"; paired 95 % interval of the difference [{diff['low']:+.3f}, {diff['high']:+.3f}] {'excludes' if excludes else 'includes'} 0"
            seed = f" (seed {seed_row['seed']})" if len(row["per_seed"]) > 1 else ""
            lines.append(
                f"- {row['task']} {row['metric']}{seed}: {_diff(seed_row['difference'])}; exact McNemar p = {test['p_value']:.3g} "
                f"({test['only_a_correct']} images right only before, {test['only_b_correct']} only after): **{verdict}**{interval}."
            )
    return (["## Paired tests (same images, before vs after)", ""] + lines + [""]) if lines else []


def seeds_markdown(run: ExperimentRun) -> list[str]:
    """One row per seed for every headline metric, with its bootstrap interval."""
    if len(run.seed_runs) < 2:
        return []
    lines = ["## Seeds", "", f"Fine-tuned once per seed ({', '.join(map(str, run.seeds))}); the results table gives mean ± sd.", ""]
    lines += ["| task | metric | seed | baseline | fine-tuned | difference |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for row in run.comparison():
        for s in row["per_seed"]:
            one = {**row, BASELINE: s[BASELINE], FINETUNED: s[FINETUNED], "difference": s["difference"], "per_seed": [s]}
            lines.append(f"| {row['task']} | {row['metric']} | {s['seed']} | {cell(one, BASELINE)} | {cell(one, FINETUNED)} | {cell(one, 'difference', True)} |")
    return lines + [""]


def per_class_markdown(run: ExperimentRun) -> list[str]:
    """Precision, recall, F1 and support per class, before and after (the first seed)."""
    models = {m.label: m for m in run.evaluation.models}
    lines = []
    for task in run.evaluation.tasks:
        base = models[BASELINE].tasks[task]
        if base.kind != "classification" or len(base.classes) > PER_CLASS_MAX:
            continue
        tuned = models[FINETUNED].tasks[task] if FINETUNED in models else None
        header = "| class | support | precision | recall | F1 |"
        rule = "| --- | ---: | ---: | ---: | ---: |"
        if tuned is not None:
            header = "| class | support | precision before | recall before | F1 before | precision after | recall after | F1 after |"
            rule = "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        lines += [f"### {task}", "", header, rule]
        for i, c in enumerate(base.metrics["per_class"]):
            cells = [c["class"], str(c["support"]), _fmt(c["precision"]), _fmt(c["recall"]), _fmt(c["f1"])]
            if tuned is not None:
                t = tuned.metrics["per_class"][i]
                cells += [_fmt(t["precision"]), _fmt(t["recall"]), _fmt(t["f1"])]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if not lines:
        return []
    seed = f" (seed {run.seeds[0]})" if len(run.seed_runs) > 1 else ""
    return ["## Per-class results" + seed, ""] + lines


def calibration_markdown(run: ExperimentRun) -> list[str]:
    rows = []
    for m in run.evaluation.models:
        for task, t in m.tasks.items():
            c = t.calibration
            if c is None:
                continue
            b, a = c["before"], c["after"]
            rows.append(
                f"| {task} | {m.label} | {c['fitted_on']} | {c['temperature']:.3g} | {b['ece']:.4f} → {a['ece']:.4f} | "
                f"{b['brier']:.4f} → {a['brier']:.4f} | {b['nll']:.4f} → {a['nll']:.4f} |"
            )
    if not rows:
        return []
    head = ["## Calibration (temperature scaling; ECE with 15 bins)", "", "| task | model | T fitted on | T | ECE | Brier | NLL |"]
    return head + ["| --- | --- | --- | ---: | ---: | ---: | ---: |"] + rows + [""]


def _settings_toml(settings: dict) -> str:
    out = []
    for section, values in settings.items():
        if values is None:
            continue
        out.append(f"[{section}]")
        for key, value in values.items():
            if value is None:
                continue
            out.append(f"{key} = {_toml_value(value)}")
        out.append("")
    return "\n".join(out).rstrip()


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def experiment_report(run: ExperimentRun, command: str, pictures: list[Path], curves: Path | None = None) -> str:
    evaluation = run.evaluation
    dataset = evaluation.dataset
    exp = run.experiment
    parts = [
        f"# {exp.name}",
        "",
        exp.settings["experiment"]["description"],
        "",
        f"- command: `{command}`",
        f"- overrides: {', '.join(f'`{o}`' for o in exp.overrides) or 'none'}",
        f"- duration: {run.seconds:.1f} s",
        f"- data: {dataset['format']} at `{dataset['root']}`, split `{dataset['split']}`, "
        f"{dataset['n_samples']} images, fingerprint `{dataset['fingerprint']}`",
        f"- prompts: {evaluation.prompts.get('name', '')}",
    ]
    parts += [f"- weights, {m.label}: {m.weights}" for m in evaluation.models]
    if run.train is not None:
        kept = (
            f"kept epoch {run.train.best_epoch} by {run.train.best_metric} = {_fmt(run.train.best_value)}"
            if run.train.best_epoch is not None
            else "kept the last epoch (no validation split)"
        )
        each = " per seed" if len(run.seed_runs) > 1 else ""
        parts.append(f"- fine-tuning: {run.train.steps} steps, {run.train.epochs_done} epochs{each}; {kept}")
    boot = evaluation.config.get("bootstrap")
    if len(run.seed_runs) > 1:
        how = f"mean ± standard deviation over seeds {', '.join(map(str, run.seeds))} (each seed's intervals under Seeds)"
    elif boot:
        how = f"95 % percentile bootstrap intervals ({boot['resamples']} resamples of the images, seed {boot['seed']}; the difference's is paired)"
    else:
        how = "point estimates (bootstrap turned off)"
    parts += ["", "## What the model saw in training", ""] + honesty_markdown(run)
    parts += ["## Results", "", f"Values: {how}.", "", comparison_markdown(run), ""]
    parts += paired_markdown(run) + seeds_markdown(run) + calibration_markdown(run)
    if curves is not None:
        parts += ["## Training curves", "", f"![training curves]({curves.relative_to(run.output).as_posix()})", ""]
    if run.probe is not None:
        from medclip_cli.experiments.probe_step import probe_markdown

        parts += ["## Zero-shot, few-shot linear probe and fine-tuned", "", probe_markdown(run.probe)]
    if run.seed_runs[0].findings is not None:
        from medclip_cli.experiments.findings_step import findings_markdown

        each = f" (seed {run.seeds[0]}; the other seeds' in results.json)" if len(run.seed_runs) > 1 else ""
        parts += [f"## Multi-label findings{each}", ""] + findings_markdown(run.seed_runs[0].findings)
    parts += per_class_markdown(run)
    skipped = {m.label: m.skipped_images for m in evaluation.models if m.skipped_images}
    if skipped:
        parts += ["## Skipped images", ""]
        for label, items in skipped.items():
            parts += [f"- {label}: {sample} — {reason}" for sample, reason in items]
        parts.append("")
    if pictures:
        parts += ["## Confusion matrices", ""]
        parts += [f"![{p.stem}]({p.relative_to(run.output).as_posix()})" for p in pictures]
        parts.append("")
    parts += ["## Configuration", "", "```toml", _settings_toml(exp.settings), "```", ""]
    parts += ["## Versions", ""] + [f"- {k} {v}" for k, v in sorted(evaluation.versions.items())] + [""]
    return "\n".join(parts)


def summary_report(runs: list[ExperimentRun], command: str, not_run: list[tuple[str, str, str]] = ()) -> str:
    """One table across experiments: accuracy@1 per task and retrieval R@1, start vs fine-tuned,
    with the data set each was measured on (experiments may read different ones); then the
    experiments that were skipped or failed, with the reason."""
    tasks: list[str] = []
    for run in runs:
        tasks += [t for t in run.evaluation.tasks if t not in tasks]
    header = ["experiment", "data"] + [f"{t} ({'R@1 i→t' if t == 'retrieval' else 'acc@1'})" for t in tasks] + ["seconds"]
    lines = [f"# Summary of {len(runs)} experiments" + (f" ({len(not_run)} not run)" if not_run else ""), "", f"command: `{command}`", "", "| " + " | ".join(header) + " |"]
    lines.append("| --- " * len(header) + "|")
    for run in runs:
        dataset = run.evaluation.dataset
        cells = [run.experiment.name, f"{dataset['format']} {dataset['split']} ({dataset['n_samples']} images)"]
        by_task = {}
        for row in run.comparison():
            if row["metric"] in ("accuracy@1", "image_to_text_R@1"):
                by_task[row["task"]] = row
        for task in tasks:
            row = by_task.get(task)
            if row is None:
                cells.append("—")
            elif row[FINETUNED] is None:
                cells.append(cell(row, BASELINE))
            else:
                saw = " (label-supervised)" if row.get("supervision") == "label-supervised" else ""
                cells.append(f"{cell(row, BASELINE)} → {cell(row, FINETUNED)}{saw}")
        cells.append(f"{run.seconds:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    if not_run:
        lines += ["", "## Not run", "", "| experiment | status | reason |", "| --- | --- | --- |"]
        lines += [f"| {name} | {status} | {reason.replace('|', '/')} |" for name, status, reason in not_run]
    lines += ["", "Values: 95 % bootstrap intervals for one seed, mean ± sd for several. "
              "(label-supervised): fine-tuning showed the model this task's labels as training text; otherwise zero-shot."]
    return "\n".join(lines) + "\n"
