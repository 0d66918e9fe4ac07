"""``medclip evaluate``: zero-shot classification and retrieval metrics over a labelled split."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from medclip_cli import options, ui
from medclip_cli.errors import UsageError

def evaluate(
    ctx: typer.Context,
    data: options.Data = None,
    dataset_kind: options.DatasetKind = None,
    image_column: options.ImageColumn = None,
    caption_column: options.CaptionColumn = None,
    label_columns: options.LabelColumns = None,
    split_column: options.SplitColumn = None,
    split: Annotated[str, typer.Option("--split", "-s", help="Split to evaluate on.")] = "test",
    task: Annotated[
        Optional[List[str]],
        typer.Option("--task", "-t", help="A label field (zero-shot classification) or 'retrieval'; repeat. Default: all.", show_default=False),
    ] = None,
    model_dir: Annotated[
        Optional[List[Path]],
        typer.Option("--model", help="A model (folder, .pt file, name such as biomedclip, or hf-hub:org/name); repeat to compare models.", show_default=False),
    ] = None,
    encoder: Annotated[
        Optional[List[str]],
        typer.Option("--encoder", "-e", help="Image or CLIP encoder name (see `medclip encoders`); repeat to compare.", show_default=False),
    ] = None,
    pretrained: Annotated[
        Optional[List[str]],
        typer.Option("--pretrained", "-p", help="Pretrained tag, weights file or none: one for all encoders, or one per --encoder. Default: the encoder's canonical weights.", show_default=False),
    ] = None,
    text_encoder: options.TextEncoder = None,
    prompts: Annotated[
        Optional[str],
        typer.Option("--prompts", help="Prompt set name (configs/prompts: seed, radiology) or a .toml/.json/.txt file. Default: seed.", show_default=False),
    ] = None,
    output: options.Output = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per forward pass.")] = 64,
    seed: Annotated[int, typer.Option("--seed", help="Seeds torch before each model is built.")] = 0,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the image-embedding and decoded-pixel caches.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at an unreadable image instead of skipping it.")] = False,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", min=0, help="Resamples of the images for each metric's 95 % interval (seeded by --seed); 0: none.")
    ] = 1000,
    calibrate_on: Annotated[
        Optional[str],
        typer.Option("--calibrate-on", help="Fit one temperature per model and task on this split; report ECE, Brier, NLL before/after.", show_default=False),
    ] = None,
    finding_columns: Annotated[
        Optional[str],
        typer.Option("--finding-columns", help="CSV/JSONL: comma-separated finding columns (1/0/-1/blank): a multi-label task scored with prompt pairs.", show_default=False),
    ] = None,
    findings_convention: Annotated[
        str, typer.Option("--findings-convention", help="chexpert (1/0/-1/blank) or binary (1/0/blank).")
    ] = "chexpert",
    uncertain: Annotated[
        str, typer.Option("--uncertain", help="Uncertain (-1) findings: ignore (U-Ignore), as-positive (U-Ones), as-negative (U-Zeros).")
    ] = "ignore",
    threshold_split: Annotated[
        Optional[str],
        typer.Option("--threshold-split", help="Findings: the split F1/sensitivity/specificity thresholds are chosen on (never --split). Default: 0.5.", show_default=False),
    ] = None,
    threshold_rule: Annotated[str, typer.Option("--threshold-rule", help="Findings thresholds: youden or f1.")] = "youden",
    device: options.Device = "auto",
    as_json: options.Json = False,
) -> None:
    """Evaluate models zero-shot: classification metrics per label field, and image-caption retrieval.

    Without --model or --encoder: ViT-B/32 with the OpenAI weights (downloaded once and cached;
    `medclip weights fetch vit-b-32:openai` fetches them ahead of an offline run). An --encoder
    without --pretrained uses its canonical weights (openai for the CLIP models); --pretrained none
    is random weights, said with a warning.

    Images are embedded once per model (and cached under MEDCLIP_HOME); every task reuses them.
    Every metric gets a 95 % percentile bootstrap interval (--bootstrap resamples of the images).
    With several models, each is compared with the first on the same images: a paired bootstrap
    interval for every difference and the exact McNemar test on accuracy@1.
    Writes results.json, predictions_<task>.csv (every class's probability per image),
    confusion_<task>.png and, with --calibrate-on, reliability_<task>.png under --output.

    Examples:

        medclip evaluate --data MedPix-2-0 --split dev --task modality --task retrieval

        medclip evaluate --data MedPix-2-0 --split dev --task modality --task plane --task retrieval --encoder rn50 --pretrained openai

        medclip evaluate --data MedPix-2-0 --split dev --model runs/a/best --model runs/b/best --prompts radiology --output eval/

        medclip evaluate --data MedPix-2-0 --split dev --task modality --model runs/a/best --calibrate-on train --bootstrap 2000

        medclip evaluate --data MedPix-2-0 --split dev --task modality --model vit-b-32 --model biomedclip --model pubmedclip

        medclip evaluate --data pairs.csv --split test --image-column path --caption-column report --label-column modality --encoder vit-b-32 --pretrained openai
    """
    from medclip_cli.data import default_data_root, load_dataset
    from medclip_cli.evaluation.evaluate import EvalConfig, evaluate as run_evaluation, resolve_tasks
    from medclip_cli.evaluation.outputs import check_output, write_outputs

    options.spell_flags(ctx)
    if output is not None:
        check_output(output)
    if data is None:
        data = default_data_root()
    sources = _model_sources(model_dir or [], encoder or [], pretrained or [], text_encoder, seed)
    data_options = options.column_options(image_column, caption_column, label_columns, split_column)
    if finding_columns is not None and not [c for c in finding_columns.split(",") if c.strip()]:
        raise UsageError(f"--finding-columns {finding_columns!r}: no column names", hint="e.g. --finding-columns Cardiomegaly,Edema")
    if finding_columns:
        data_options.update(finding_columns=finding_columns, findings_convention=findings_convention)
    dataset = load_dataset(data, split, dataset_kind, **data_options)
    if dataset.format == "webdataset" and dataset.problems:  # shard samples skipped while reading
        ui.warning(f"{split}: skipped {len(dataset.problems)} shard sample(s), e.g. {dataset.problems[0]}; `medclip data check` lists them")
    calibration = None
    if calibrate_on is not None:
        if calibrate_on == split:
            raise UsageError(f"--calibrate-on {calibrate_on}: the evaluated split itself", hint="fit the temperature on another split, e.g. train or dev")
        calibration = load_dataset(data, calibrate_on, dataset_kind, **data_options)
    if dataset.multilabel_fields and not task:
        _evaluate_findings(sources, dataset, data, dataset_kind, data_options, prompts, uncertain, threshold_split,
                           threshold_rule, batch_size, device, seed, not no_cache, output, as_json, bootstrap)
        return
    config = EvalConfig(
        tasks=resolve_tasks(dataset, task or []),
        dataset_options=data_options,
        prompts=prompts,
        batch_size=batch_size,
        device=device,
        seed=seed,
        cache=not no_cache,
        strict=strict,
        bootstrap=bootstrap,
    )
    from medclip_cli import runlock

    # The --output folder belongs to this evaluation (one process) until its results are written.
    with runlock.hold(output) if output is not None else contextlib.nullcontext():
        with ui.progress(enabled=not as_json) as reporter:
            result = run_evaluation(sources, dataset, config, progress=reporter, calibration=calibration)
        written = write_outputs(result, output) if output is not None else []
    if as_json:
        ui.print_json(result.to_json())
        return
    _show(result)
    if written:
        ui.info(f"wrote {len(written)} files to {output}")


def _evaluate_findings(sources, dataset, data, dataset_kind, data_options, prompts, uncertain, threshold_split,
                       threshold_rule, batch_size, device, seed, cache, output, as_json, bootstrap) -> None:
    from medclip_cli.data import load_dataset
    from medclip_cli.evaluation.multilabel import findings_json, run_findings, write_findings_outputs

    if threshold_split is not None and threshold_split == dataset.split:
        raise UsageError(f"--threshold-split {threshold_split!r} is the evaluated --split", hint="choose thresholds on another split, e.g. dev")
    validation = load_dataset(data, threshold_split, dataset_kind, **data_options) if threshold_split else None
    with ui.progress(enabled=not as_json) as reporter:
        results = run_findings(
            sources, dataset, validation=validation, prompts=prompts, uncertain=uncertain,
            threshold_rule=threshold_rule, batch_size=batch_size, device=device, seed=seed, cache=cache, progress=reporter,
            bootstrap=bootstrap,
        )
    written = write_findings_outputs(results, dataset, output) if output is not None else []
    if as_json:
        ui.print_json(findings_json(results))
        return
    for label, r in results:
        ui.show(ui.table(f"{r.field} ({label}); uncertain: {r.uncertain}; thresholds: {r.thresholds_from}", *findings_rows(r)))
    if len(results) > 1:
        for row in findings_json(results).get("comparisons", []):
            _show_findings_difference(row)
    if written:
        ui.info(f"wrote {len(written)} files to {output}")


def findings_rows(r) -> tuple[list[str], list[tuple]]:
    """Columns and rows of one model's findings table: each metric with its 95 % interval."""
    from medclip_cli.evaluation.findings_uncertainty import METRICS

    columns = ["finding", "labelled", "positive", "threshold", "AUROC", "AUPRC", "F1", "sensitivity", "specificity"]
    rows = [(e["finding"], e["n_labelled"], e["n_positive"], e["threshold"], *[r.cell(f"{m}:{e['finding']}") for m in METRICS])
            for e in r.metrics["per_finding"]]
    rows.append(("macro", "", "", "", *[r.cell(f"macro_{m}") for m in METRICS]))
    return columns, rows


def _show_findings_difference(row: dict) -> None:
    if not row["same_images"]:
        ui.warning(f"findings: {row['model']} vs {row['reference']} not compared: the models were scored on different images")
        return
    rows = [(name.replace(":", " "), _signed(d)) for name, d in row.get("differences", {}).items() if name.startswith("macro_")]
    ui.show(ui.table(f"findings: {row['model']} − {row['reference']} (paired bootstrap, same images)", ["metric", "difference [95 % interval]"], rows))


def _model_sources(model_dirs: list[Path], encoders: list[str], pretrained: list[str], text_encoder: str | None, seed: int):
    """The models to compare, named for the tables: a folder by as much of its path as tells it
    apart, an encoder by ``name/tag``, a name given twice with ``#N``."""
    from medclip_cli.evaluation.evaluate import ModelSource
    from medclip_cli.models.source import build_from_source, model_sources

    specs = model_sources(model_dirs, encoders, pretrained, text_encoder, seed, default_model=True)
    labels = run_names(model_dirs) + [f"{s['encoder']}/{s['pretrained']}" for s in specs[len(model_dirs):]]
    bundles = [*model_dirs, *[None] * (len(specs) - len(model_dirs))]  # results name a folder as it was given
    sources = [
        ModelSource(label, lambda spec=spec: build_from_source(spec), bundle=bundle)
        for label, spec, bundle in zip(labels, specs, bundles)
    ]
    for i, source in enumerate(sources):
        if labels.count(source.label) > 1:
            source.label = f"{source.label}#{i + 1}"
    return sources


def run_names(paths: list[Path]) -> list[str]:
    """Short names for model folders: the folder's name, with as many parent folders as it takes to
    tell them apart (``runs/vit-b-32/last`` and ``runs/rn50/last`` -> ``vit-b-32/last``, ``rn50/last``)."""
    parts = [Path(os.path.normpath(p.absolute())).parts for p in paths]
    names = []
    for mine in parts:
        depth = 1
        while depth < len(mine) and sum(other[-depth:] == mine[-depth:] for other in parts) > 1:
            depth += 1
        names.append("/".join(mine[-depth:]))
    return names


def _show(result) -> None:
    for task in result.tasks:
        if len(result.models) > 1:
            ui.show(_comparison_table(result, task))
            _show_paired(result, task)
            _show_calibration(result, task)
            continue
        model = result.models[0]
        t = model.tasks[task]
        ui.show(ui.table(_title(task, model.label), ["metric", "value"], _summary(t)))
        _show_calibration(result, task)
        if t.kind == "classification":
            rows = [
                (c["class"], name, c["precision"], c["recall"], c["f1"], c["support"], c["auroc"])
                for c, name in zip(t.metrics["per_class"], t.class_names)
            ]
            ui.show(ui.table(None, ["class", "prompted as", "precision", "recall", "F1", "support", "AUROC"], rows))
            matrix = [(f"true {c}", *counts) for c, counts in zip(t.classes, t.metrics["confusion_matrix"])]
            ui.show(ui.table(None, ["confusion", *[f"pred {c}" for c in t.classes]], matrix))
    for model in result.models:
        ui.info(f"weights of {model.label}: {model.weights}")
    for model in result.models:
        for image_id, reason in model.skipped_images[:5]:
            ui.warning(f"skipped image {image_id}: {reason}")
        if len(model.skipped_images) > 5:
            ui.warning(f"skipped {len(model.skipped_images) - 5} more unreadable images (see results.json)")


def _title(task: str, label: str) -> str:
    return f"{task} ({label})"


def _summary(t) -> list[tuple[str, object]]:
    rows = [(name, _with_interval(t, name)) for name, value in t.metrics.items() if _is_summary(value)]
    if t.n_excluded:
        rows.append((f"left out (no {'caption' if t.kind == 'retrieval' else 'class'})", t.n_excluded))
    absent = t.metrics.get("absent_classes")
    if absent:
        rows.append(("absent from this split", ", ".join(absent)))
    return rows


def _is_summary(value: object) -> bool:
    return value is None or isinstance(value, (int, float)) and not isinstance(value, bool)


def _comparison_table(result, task: str):
    from medclip_cli.evaluation.metrics import lower_is_better

    models = result.models
    first = models[0].tasks[task]
    names = [name for name, value in first.metrics.items() if _is_summary(value) and not name.startswith("n_")]
    rows = [("n_images", *[m.tasks[task].n_images for m in models])]
    # Each model reads the same images its own way: say how.
    inputs = [m.inputs for m in models]
    if all(inputs):
        rows.append(("input", *[f"{i['preprocess']['size']}px {i['preprocess']['resize_mode']}" for i in inputs]))
        rows.append(("context / scoring", *[f"{i['context_length']} / {i['scoring']}" for i in inputs]))
    for name in names:
        values = [m.tasks[task].metrics.get(name) for m in models]
        defined = [v for v in values if v is not None]
        best = (min if lower_is_better(name) else max)(defined) if len(defined) > 1 else None
        cells = [_with_interval(m.tasks[task], name) for m in models]
        rows.append((name, *[ui.emphasis(c) if best is not None and v == best else c for v, c in zip(values, cells)]))
    absent = first.metrics.get("absent_classes")
    if absent:
        rows.append(("absent from this split", *[", ".join(absent)] * len(models)))
    return ui.table(_title(task, f"{len(models)} models"), ["metric", *[m.label for m in models]], rows)


def _with_interval(t, name: str) -> object:
    """``0.914 [0.876, 0.947]`` when the metric has a bootstrap interval, else the bare value."""
    interval = t.intervals.get(name)
    return interval.format() if interval is not None and interval.low is not None else t.metrics.get(name)


def _show_paired(result, task: str) -> None:
    from medclip_cli.evaluation.comparison import significance_words

    for row in (r for r in result.comparisons if r["task"] == task):
        if not row["same_images"]:
            ui.warning(f"{task}: {row['model']} vs {row['reference']} not compared: the models were scored on different images")
            continue
        rows = [(name, _signed(d)) for name, d in row["differences"].items()]
        title = f"{task}: {row['model']} − {row['reference']} (paired bootstrap, same images)"
        ui.show(ui.table(title, ["metric", "difference [95 % interval]"], rows))
        ui.line(significance_words(row))


def _signed(d: dict) -> str:
    if d["low"] is None:
        return f"{d['point']:+.3f}"
    return f"{d['point']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def _show_calibration(result, task: str) -> None:
    rows = []
    for m in result.models:
        c = m.tasks[task].calibration
        if c is None:
            continue
        before, after = c["before"], c["after"]
        rows.append((m.label, c["temperature"], before["ece"], after["ece"], before["brier"], after["brier"], before["nll"], after["nll"]))
    if rows:
        fitted = result.models[0].tasks[task].calibration
        title = f"{task}: calibration (T fitted on {fitted['fitted_on']}, {fitted['n_fit_images']} images; measured on {result.dataset['split']})"
        columns = ["model", "T", "ECE", "ECE (T)", "Brier", "Brier (T)", "NLL", "NLL (T)"]
        ui.show(ui.table(title, columns, rows))
