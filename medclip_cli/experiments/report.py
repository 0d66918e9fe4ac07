"""``report.md``: what was run, with which data and versions, and what it measured."""

from __future__ import annotations

from pathlib import Path

from medclip_cli.experiments.runner import BASELINE, FINETUNED, ExperimentRun


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _diff(value) -> str:
    return "—" if value is None else f"{value:+.4f}"


def comparison_markdown(run: ExperimentRun) -> str:
    lines = [f"| task | metric | {BASELINE} | {FINETUNED} | difference |", "| --- | --- | ---: | ---: | ---: |"]
    for row in run.comparison():
        lines.append(
            f"| {row['task']} | {row['metric']} | {_fmt(row[BASELINE])} | {_fmt(row[FINETUNED])} | {_diff(row['difference'])} |"
        )
    return "\n".join(lines)


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


def experiment_report(run: ExperimentRun, command: str, pictures: list[Path]) -> str:
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
    if run.train is not None:
        kept = (
            f"kept epoch {run.train.best_epoch} by {run.train.best_metric} = {_fmt(run.train.best_value)}"
            if run.train.best_epoch is not None
            else "kept the last epoch (no validation split)"
        )
        parts.append(f"- fine-tuning: {run.train.steps} steps, {run.train.epochs_done} epochs; {kept}")
    parts += ["", "## Results", "", comparison_markdown(run), ""]
    if run.probe is not None:
        from medclip_cli.experiments.probe_step import probe_markdown

        parts += ["## Zero-shot, few-shot linear probe and fine-tuned", "", probe_markdown(run.probe)]
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


def summary_report(runs: list[ExperimentRun], command: str) -> str:
    """One table across experiments: accuracy@1 per task and retrieval R@1, start vs fine-tuned."""
    tasks: list[str] = []
    for run in runs:
        tasks += [t for t in run.evaluation.tasks if t not in tasks]
    header = ["experiment"] + [f"{t} ({'R@1 i→t' if t == 'retrieval' else 'acc@1'})" for t in tasks] + ["seconds"]
    lines = [f"# Summary of {len(runs)} experiments", "", f"command: `{command}`", "", "| " + " | ".join(header) + " |"]
    lines.append("| --- " * len(header) + "|")
    for run in runs:
        cells = [run.experiment.name]
        by_task = {}
        for row in run.comparison():
            if row["metric"] in ("accuracy@1", "image_to_text_R@1"):
                by_task[row["task"]] = row
        for task in tasks:
            row = by_task.get(task)
            if row is None:
                cells.append("—")
            elif row[FINETUNED] is None:
                cells.append(_fmt(row[BASELINE]))
            else:
                cells.append(f"{_fmt(row[BASELINE])} → {_fmt(row[FINETUNED])}")
        cells.append(f"{run.seconds:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
