"""``medclip finetune``."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from medclip_cli import options, ui
from medclip_cli.errors import UsageError

def finetune(
    ctx: typer.Context,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Run folder: last/, best/, checkpoints/, metrics.jsonl, config.json.")
    ],
    model_dir: options.ModelDir = None,
    encoder: options.Encoder = None,
    text_encoder: options.TextEncoder = None,
    pretrained: options.Pretrained = None,
    text_pretrained: options.TextPretrained = "auto",
    image_size: options.ImageSize = None,
    data: Annotated[
        Optional[Path],
        typer.Option("--data", "-d", help="Data set root or file (with --resume: the run's own).", show_default=False),
    ] = None,
    dataset_format: options.DatasetKind = None,
    image_column: options.ImageColumn = None,
    caption_column: options.CaptionColumn = None,
    label_columns: options.LabelColumns = None,
    split_column: options.SplitColumn = None,
    split: Annotated[str, typer.Option("--split", help="Split to train on.")] = "train",
    val_split: Annotated[str, typer.Option("--val-split", help="Split validated after every epoch, or none.")] = "dev",
    val_tasks: Annotated[
        Optional[List[str]],
        typer.Option("--val-task", help="Label field scored zero-shot at validation (repeat).", show_default=False),
    ] = None,
    select_metric: Annotated[
        str, typer.Option("--select-metric", help="Validation metric that picks best/ (e.g. zeroshot_modality_acc, findings_macro_auroc).")
    ] = "val_loss",
    finding_columns: Annotated[
        Optional[str],
        typer.Option("--finding-columns", help="CSV/JSONL: comma-separated finding columns (1/0/-1/blank), validated each epoch with prompt pairs.", show_default=False),
    ] = None,
    findings_convention: Annotated[
        str, typer.Option("--findings-convention", help="chexpert (1/0/-1/blank) or binary (1/0/blank).")
    ] = "chexpert",
    val_findings: Annotated[
        Optional[str],
        typer.Option("--val-findings", help="Multi-label field validated each epoch (default with --finding-columns: findings).", show_default=False),
    ] = None,
    findings_uncertain: Annotated[
        str, typer.Option("--uncertain", help="Uncertain (-1) findings at validation: ignore (U-Ignore), as-positive (U-Ones), as-negative (U-Zeros).")
    ] = "ignore",
    findings_prompts: Annotated[
        Optional[str],
        typer.Option("--findings-prompts", help="Prompt set (or file) whose [pairs] word the findings (default: the seed's).", show_default=False),
    ] = None,
    loss_weight: Annotated[
        float, typer.Option("--loss-weight", help="λ in λ·CE(image→text) + (1−λ)·CE(text→image); 0.5 is CLIP's.")
    ] = 0.5,
    soft_targets: Annotated[
        bool,
        typer.Option(
            "--soft-targets",
            help="Pairs sharing a --soft-label value (else a caption) count as positives, not negatives; "
            "a label prompt is a positive of every image with its class.",
        ),
    ] = False,
    soft_label: Annotated[
        Optional[str],
        typer.Option("--soft-label", help="Label field that defines soft-target positives.", show_default=False),
    ] = None,
    label_text_fields: Annotated[
        Optional[List[str]],
        typer.Option("--label-text-field", help="Label field whose prompts may stand in for a caption (repeat).", show_default=False),
    ] = None,
    label_text_prob: Annotated[
        float, typer.Option("--label-text-prob", help="Chance per pair and step that a label prompt replaces its caption.")
    ] = 0.0,
    label_text_prompts: Annotated[
        Optional[str],
        typer.Option("--label-text-prompts", help="Prompt set (or file) the label prompts come from (default: the seed's).", show_default=False),
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the training split.")] = 10,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", help="Pairs per step and process (the contrastive batch).")
    ] = 32,
    lr: Annotated[
        Optional[float],
        typer.Option(
            "--lr",
            help="Peak learning rate (default: 1e-5 from pretrained weights, 5e-4 from scratch).",
            show_default=False,
        ),
    ] = None,
    weight_decay: Annotated[
        float, typer.Option("--wd", help="AdamW weight decay (never on norms, biases, embeddings, logit scale).")
    ] = 0.1,
    warmup: Annotated[
        float, typer.Option("--warmup", help="Warmup: a fraction of the steps (< 1) or a number of steps.")
    ] = 0.1,
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Optimizer step every k batches.")] = 1,
    grad_clip: Annotated[Optional[float], typer.Option("--grad-clip", help="Clip the gradient norm (0: off).")] = 1.0,
    ema_decay: Annotated[
        float,
        typer.Option(
            "--ema-decay",
            help="Validate and save a moving average of the weights with this decay, e.g. 0.998 (0: off).",
        ),
    ] = 0.0,
    precision: Annotated[
        str,
        typer.Option(
            "--precision", help="auto, fp32, bf16 or fp16 (auto: bf16 on a GPU that has it, fp32 on the CPU)."
        ),
    ] = "auto",
    max_steps: Annotated[
        Optional[int], typer.Option("--max-steps", help="Stop after this many optimizer steps.", show_default=False)
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for initialisation and data order.")] = 0,
    augment: Annotated[
        bool, typer.Option("--augment/--no-augment", help="Random resized crops (never a horizontal flip).")
    ] = False,
    lock_image: Annotated[bool, typer.Option("--lock-image", help="Freeze the image tower (LiT).")] = False,
    lock_image_unlocked: Annotated[
        int, typer.Option("--lock-image-unlocked", help="Last image-tower groups left trainable.")
    ] = 0,
    lock_text: Annotated[bool, typer.Option("--lock-text", help="Freeze the text tower.")] = False,
    lock_text_unlocked: Annotated[
        int, typer.Option("--lock-text-unlocked", help="Last text-tower layers left trainable.")
    ] = 0,
    text_feature_cache: Annotated[
        bool, typer.Option("--text-feature-cache", help="Embed the texts once with the locked text tower; train only its projection.")
    ] = False,
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", help="Checkpoint every N steps (and at every epoch end).")
    ] = 200,
    log_every: Annotated[int, typer.Option("--log-every", help="Steps per line of metrics.jsonl.")] = 10,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --output from its last checkpoint.")
    ] = False,
    workers: Annotated[int, typer.Option("--workers", help="Threads preparing batches ahead of each step.")] = 1,
    cache: Annotated[
        bool, typer.Option("--cache/--no-cache", help="Read and write the decoded-pixel and caption-token caches.")
    ] = True,
    compile: Annotated[
        bool,
        typer.Option(
            "--compile/--no-compile",
            help="torch.compile the towers' blocks: fused kernels on a GPU; the first steps compile.",
        ),
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Stop at an unreadable image instead of skipping it.")
    ] = False,
    stream: Annotated[
        bool,
        typer.Option(
            "--stream",
            help="Train straight from WebDataset .tar shards (nothing unpacked or cached); --workers loader processes per process.",
        ),
    ] = False,
    shuffle_buffer: Annotated[
        int, typer.Option("--shuffle-buffer", help="With --stream: samples each loader worker shuffles among.")
    ] = 1000,
    samples_per_epoch: Annotated[
        Optional[int],
        typer.Option(
            "--samples-per-epoch",
            help="With --stream: samples in an epoch (default: the shards' sizes.json, else counted).",
            show_default=False,
        ),
    ] = None,
    device: options.Device = "auto",
    as_json: options.Json = False,
) -> None:
    """Fine-tune a CLIP model on image-caption pairs with the weighted contrastive loss.

    The loss is λ·CE(image→text) + (1−λ)·CE(text→image) over the batch's similarity matrix
    (--loss-weight λ; 0.5 is CLIP's). Every epoch is validated on --val-split; runs/NAME/last/ and
    runs/NAME/best/ are model bundles every command (and open_clip's local-dir:) can load.
    Ctrl-C saves a checkpoint; --resume continues exactly where the run stopped. Under torchrun
    the loss spans every process's batch.

    Examples:

        medclip finetune --encoder vit-b-32 --pretrained openai --data ../shared/medpix2 --output runs/medpix --val-task modality

        medclip finetune --output runs/medpix --resume

        medclip finetune --model biomedclip --data ../shared/medpix2 --output runs/biomedclip --val-task modality

        medclip finetune --encoder vit-b-32 --data chexpert.csv --caption-column report --finding-columns "Edema,Pleural Effusion" --select-metric findings_macro_auroc --output runs/cxr

        medclip finetune --encoder vit-b-32 --pretrained openai --data pairs.csv --image-column path --caption-column report --output runs/pairs

        medclip finetune --encoder vit-b-16 --pretrained openai --data shards/ --stream --workers 4 --output runs/stream

        torchrun --nproc-per-node 4 -m medclip_cli.cli finetune --encoder rn50 --pretrained openai --output runs/rn50
    """
    from medclip_cli.training.config import TrainConfig, resume_settings
    from medclip_cli.training.train import TrainingInterrupted, train

    # Each parameter is named after the TrainConfig field it sets; the engine's messages spell
    # each setting as this command's flag.
    options.spell_flags(ctx)
    names = {f.name for f in fields(TrainConfig)}
    settings = {name: value for name, value in ctx.params.items() if name in names}
    settings.update(
        val_split=None if val_split.strip().lower() == "none" else val_split,
        val_tasks=list(val_tasks or []),
        label_text_fields=list(label_text_fields or []),
        grad_clip=grad_clip or None,
        precision=precision.strip().lower(),
        dataset_options=options.column_options(image_column, caption_column, label_columns, split_column),
    )
    if finding_columns:
        from medclip_cli.data.findings import DEFAULT_FIELD

        settings["dataset_options"].update(finding_columns=finding_columns, findings_convention=findings_convention)
        settings["val_findings"] = val_findings or DEFAULT_FIELD
    if resume:
        settings = resume_settings(output, settings, given=options.given(ctx))
    if settings["data"] is None:
        raise UsageError("no --data given", hint="pass --data PATH (e.g. a MedPix 2.0 folder)")
    if settings.get("encoder") is not None and settings.get("pretrained") is None:
        from medclip_cli.models.defaults import default_pretrained

        # Fine-tuning starts from the encoder's pretrained weights; from scratch is `--pretrained none`.
        settings["pretrained"] = default_pretrained(settings["encoder"], None)
    config = TrainConfig(**settings)
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 draws and prints
    events = _Events(as_json or not main_process)
    try:
        with ui.progress(enabled=not as_json and main_process) as reporter:
            result = train(config, reporter, events)
            temperatures = None
            if main_process:
                from medclip_cli.training.temperature import store_run_temperatures

                temperatures = store_run_temperatures(config, result, reporter)
    except TrainingInterrupted as exc:
        exc.hint = f"continue with: medclip finetune --output {output} --resume"
        raise
    summary = {
        "output": str(result.output),
        "last": str(result.last),
        "best": str(result.best) if result.best else None,
        "steps": result.steps,
        "epochs": result.epochs_done,
        "best_metric": result.best_metric,
        "best_value": result.best_value,
        "best_epoch": result.best_epoch,
        "history": result.history,
        "temperature": temperatures,
    }
    if not main_process:
        return
    if as_json:
        ui.print_json(summary)
        return
    if result.best is not None:
        ui.info(f"best epoch {result.best_epoch} ({result.best_metric} {result.best_value:.4f}): {result.best}")
    ui.info(f"last: {result.last}  ({result.steps} steps)")
    for name, entry in (temperatures or {}).items():
        ui.info(f"{name}: temperature {entry['value']:.3g} fitted on {entry['fitted_on']} (NLL {entry['nll_before']:.4f} -> {entry['nll_after']:.4f}); classify applies it")


def _starting_weights(config) -> str:
    from medclip_cli.models.factory import normalize_pretrained

    if config.model_dir is not None:
        return f"model {config.model_dir}"
    tag = normalize_pretrained(config.pretrained)
    return tag if tag is not None else "random init (from scratch: --pretrained none)"


class _Events:
    """Draws the plan before the run and a table after each validation."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def on_plan(self, plan, config) -> None:
        if self.as_json:
            return
        warm = f"{plan.warmup_steps} steps ({plan.warmup_steps / max(1, plan.total_steps):.0%})"
        rows = [
            ("starting weights", _starting_weights(config)),
            (
                "device / precision",
                f"{plan.device} / {plan.precision}"
                + (f" × {plan.world_size} processes" if plan.world_size > 1 else ""),
            ),
            ("training pairs", f"{plan.train_pairs}" + (f" ({plan.skipped} skipped)" if plan.skipped else "")),
            ("validation pairs", plan.val_pairs if config.val_split else "off"),
            (
                "loss",
                f"λ={config.loss_weight} "
                + ("soft targets by " + (config.soft_label or "caption") if config.soft_targets else "hard targets"),
            ),
            ("epochs × steps", f"{plan.epochs} × {plan.steps_per_epoch} (total {plan.total_steps} steps)"),
            ("batch / effective", f"{plan.batch_size} / {plan.effective_batch}"),
            ("AdamW lr / wd", f"{plan.lr:g} / {plan.weight_decay:g}, warmup {warm}, then cosine"),
            ("trainable params", f"{plan.trainable_params:,} of {plan.total_params:,}"),
        ]
        if plan.resumed_from:
            rows.append(("resumed from", f"{plan.resumed_from} (step {plan.start_step})"))
        ui.show(ui.table(f"finetune → {config.output}", ["setting", "value"], rows))

    def on_validation(self, record: dict) -> None:
        if self.as_json:
            return
        shown = [(k, v) for k, v in record.items() if k not in ("type", "best", "epoch", "step")]
        title = f"epoch {record['epoch']} (step {record['step']})" + (" — new best" if record.get("best") else "")
        ui.show(ui.table(title, ["metric", "value"], shown))
