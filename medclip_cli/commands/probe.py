"""``medclip probe``: few-shot logistic-regression probes on frozen image embeddings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from medclip_cli import options, ui
from medclip_cli.errors import UsageError

#: What ``probe --output`` writes (a rerun may replace them; other files make it refuse the folder).
PROBE_FILES = re.compile(r"results\.json|learning_curve_.+\.png")


def probe(
    data: options.Data = None,
    dataset_kind: options.DatasetKind = None,
    image_column: options.ImageColumn = None,
    caption_column: options.CaptionColumn = None,
    label_column: options.LabelColumns = None,
    split_column: options.SplitColumn = None,
    train_split: Annotated[str, typer.Option("--train-split", help="Split the k-shot draws come from.")] = "train",
    eval_split: Annotated[str, typer.Option("--eval-split", help="Split the probes are scored on.")] = "test",
    task: Annotated[
        Optional[List[str]],
        typer.Option("--task", "-t", help="Label field to classify (repeat). Default: every field with 2+ classes.", show_default=False),
    ] = None,
    shots: Annotated[str, typer.Option("--shots", help="Images per class: comma-separated numbers and/or all.")] = "1,2,4,8,16,all",
    repeats: Annotated[int, typer.Option("--repeats", "-r", min=1, help="Draws per k (different seeds).")] = 5,
    model_dir: Annotated[
        Optional[List[Path]],
        typer.Option("--model", help="A model (folder, .pt file, name such as biomedclip, or hf-hub:org/name); repeat to compare.", show_default=False),
    ] = None,
    encoder: Annotated[
        Optional[List[str]],
        typer.Option("--encoder", "-e", help="Encoder name (see `medclip encoders`); repeat to compare.", show_default=False),
    ] = None,
    pretrained: Annotated[
        Optional[List[str]],
        typer.Option("--pretrained", "-p", help="Pretrained tag, weights file or none: one for all encoders, or one each. Default: the encoder's canonical weights.", show_default=False),
    ] = None,
    text_encoder: options.TextEncoder = None,
    embeddings: Annotated[
        Optional[List[Path]],
        typer.Option("--embeddings", help="Embedding file(s) of one model from `medclip embed`, instead of a model.", show_default=False),
    ] = None,
    prompts: Annotated[
        Optional[str], typer.Option("--prompts", help="Prompt set for the zero-shot line (default: seed).", show_default=False)
    ] = None,
    output: options.Output = None,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the draws, the folds and random-init towers.")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per forward pass.")] = 64,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the image-embedding cache.")] = False,
    device: options.Device = "auto",
    as_json: options.Json = False,
) -> None:
    """Train logistic-regression probes on k images per class of frozen embeddings; compare with zero-shot.

    For each k, --repeats seeded draws of k training images per class; C is chosen by
    cross-validation inside each draw, never on the evaluation split. Reports accuracy@1,
    balanced accuracy and macro-F1 (mean ± sd over repeats) beside the model's zero-shot figures
    on the same images. Several models share the draws. Writes results.json and
    learning_curve_<task>.png under --output.

    Examples:

        medclip probe --data MedPix-2-0 --train-split train --eval-split dev --task modality --shots 1,2,4,8,16,all --repeats 5 --encoder vit-b-32 --pretrained openai --output probe/

        medclip probe --embeddings medpix.parquet --train-split train --eval-split dev --task plane

        medclip probe --data MedPix-2-0 --eval-split dev --model runs/a/best --encoder vit-b-32 --pretrained openai --task modality
    """
    from medclip_cli.evaluation.probe import ProbeConfig, parse_shots
    from medclip_cli.evaluation.probe_run import probe_tasks

    config = ProbeConfig(shots=parse_shots(shots), repeats=repeats, seed=seed)
    if output is not None:
        from medclip_cli.evaluation.outputs import check_output

        check_output(output, "probe", PROBE_FILES)
    with ui.progress(enabled=not as_json) as reporter:
        sources, tasks = _sources(
            data, dataset_kind, options.column_options(image_column, caption_column, label_column, split_column),
            train_split, eval_split, task or [], model_dir or [], encoder or [], pretrained or [], text_encoder,
            embeddings or [], prompts, seed, batch_size, not no_cache, device, reporter,
        )
        result = probe_tasks(sources, tasks, train_split, eval_split, config, reporter)
    payload = result.to_json()
    written = _write(payload, output) if output is not None else []
    if as_json:
        ui.print_json(payload)
        return
    for name, t in payload["tasks"].items():
        ui.show(probe_table(name, t))
    if written:
        ui.info(f"wrote {len(written)} files to {output}")


def _sources(data, dataset_kind, data_options, train_split, eval_split, tasks, model_dirs, encoders, pretrained,
             text_encoder, embeddings, prompts, seed, batch_size, cache, device, reporter):
    from medclip_cli.evaluation.probe_sources import file_probe_source, model_probe_source
    from medclip_cli.models.source import model_sources

    if embeddings:
        if model_dirs or encoders:
            raise UsageError("pass either --embeddings FILE or models (--model/--encoder), not both")
        source = file_probe_source(embeddings)
        return [source], list(tasks) or _default_tasks(train_split, source.table, embeddings)
    sources = model_sources(model_dirs, encoders, pretrained, text_encoder, seed)
    from medclip_cli.data import default_data_root, load_dataset

    root = data if data is not None else default_data_root()
    if train_split == eval_split:
        raise UsageError(f"--train-split and --eval-split are both {train_split!r}", hint="probe on one split, evaluate on another")
    datasets = [load_dataset(root, s, dataset_kind, **data_options) for s in (train_split, eval_split)]
    chosen = list(tasks) or [n for n, f in datasets[0].label_fields.items() if len(f.classes) >= 2]
    unknown = [t for t in chosen if t not in datasets[0].label_fields]
    if unknown:
        raise UsageError(f"--task {unknown[0]!r} is not a label field of this data set (fields: {', '.join(datasets[0].label_fields) or 'none'})")
    if not chosen:
        raise UsageError(f"{root}: no label field with 2 or more classes to probe")
    built = [
        model_probe_source(s, datasets, chosen, prompts=prompts, batch_size=batch_size, cache=cache, device=device, progress=reporter)
        for s in sources
    ]
    return built, chosen


def _default_tasks(train_split: str, table, paths: list[Path]) -> list[str]:
    """Every label field with 2 or more classes among the embeddings' ``train_split`` rows."""
    train = table.split(train_split)
    chosen = [name for name, values in train.labels.items() if len({v for v in values if v is not None}) >= 2]
    if not chosen:
        raise UsageError(
            f"{', '.join(map(str, paths))}: no label field with 2 or more classes in split {train_split!r} to probe",
            hint="embed a labelled data set (medclip embed --data ...), or pick another --train-split",
        )
    return chosen


def _write(payload: dict, output: Path) -> list[Path]:
    from medclip_cli.atomic import write_text_atomic
    from medclip_cli.errors import OutputError
    from medclip_cli.evaluation.probe_plot import save_learning_curve

    try:
        output.mkdir(parents=True, exist_ok=True)
        written = [write_text_atomic(output / "results.json", json.dumps(payload, indent=2, default=str) + "\n")]
        for name, t in payload["tasks"].items():
            slug = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in name)
            written.append(save_learning_curve(t, name, output / f"learning_curve_{slug}.png"))
    except OSError as exc:
        raise OutputError(f"--output {output}: writing the results failed ({exc.strerror or exc})") from exc
    return written


def _cell(stat: dict) -> str:
    return f"{stat['mean']:.4f}" if stat["sd"] is None else f"{stat['mean']:.4f} ± {stat['sd']:.4f}"


def probe_table(name: str, t: dict):
    """One task's probe results as a rich table (also shown by `medclip reproduce`)."""
    metrics = ("accuracy@1", "balanced_accuracy", "macro_f1")
    rows = []
    for model in t["models"]:
        zero = model.get("zero_shot")
        if zero is not None:
            rows.append((model["label"], "zero-shot", *[zero[m] for m in metrics], "—"))
        for k, stats in model["summary"].items():
            cs = sorted({r["C"] for r in model["runs"] if r["k"] == k})
            rows.append((model["label"], f"{k}-shot" if k != "all" else f"all ({t['n_train']})", *[_cell(stats[m]) for m in metrics],
                         ", ".join(f"{c:g}" for c in cs)))
    title = f"{name}: {len(t['classes'])} classes, {t['n_eval']} evaluation images"
    return ui.table(title, ["model", "probe", *metrics, "C chosen"], rows)
