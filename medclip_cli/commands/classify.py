"""``medclip classify``: images against free-text labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from medclip_cli import options, ui
from medclip_cli.errors import UsageError


def classify(
    images: Annotated[
        List[Path], typer.Argument(help="PNG, JPEG, TIFF (8/16-bit) or DICOM files, or folders (with --output).", show_default=False)
    ],
    labels: Annotated[
        Optional[str], typer.Option("--labels", "-l", help="Comma-separated labels.", show_default=False)
    ] = None,
    label: Annotated[
        Optional[List[str]], typer.Option("--label", help="One label (repeat; may contain commas).", show_default=False)
    ] = None,
    template: Annotated[
        Optional[List[str]],
        typer.Option("--template", "-t", help="Prompt template with {} for the label (repeat to ensemble).", show_default=False),
    ] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", "-k", min=1, help="Show the k best labels (default: all).", show_default=False)] = None,
    window: Annotated[
        Optional[str], typer.Option("--window", help="DICOM window as CENTER,WIDTH (default: the file's).", show_default=False)
    ] = None,
    model_dir: options.ModelDir = None,
    encoder: options.Encoder = None,
    text_encoder: options.TextEncoder = None,
    pretrained: options.Pretrained = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Folders: include their subfolders.")] = False,
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="Write one row per image to this .csv or .jsonl, batch by batch; a rerun skips rows already there.", show_default=False),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per forward pass (with --output).")] = 64,
    explain: Annotated[bool, typer.Option("--explain", help="Also write Grad-CAM heat maps per label (see `medclip explain`).")] = False,
    explain_dir: Annotated[Path, typer.Option("--explain-dir", help="Folder for the --explain maps.")] = Path("explanations"),

    device: options.Device = "auto",
    as_json: options.Json = False,
) -> None:
    """Classify images against free-text labels, zero-shot.

    Probabilities use the model's own logit scale and sum to 1 per image; a bundle that
    `medclip finetune` calibrated on its validation split has its logits divided by the stored
    temperature (said on stderr). Without --model or --encoder: ViT-B/32 with the OpenAI weights
    (downloaded once and cached; `medclip weights fetch vit-b-32:openai` fetches them ahead of an
    offline run).

    Examples:

        medclip classify scan.png --labels "brain MRI,chest X-ray,abdominal CT"

        medclip classify scan.png --labels "brain MRI,chest X-ray" --encoder rn50 --pretrained openai

        medclip classify ct.dcm --label "CT, with contrast" --label "MRI" --model runs/medpix/best --json

        medclip classify scan.png --labels "CT,MRI,X-ray" --model pubmedclip
        medclip classify scans/ --recursive --labels "CT,MRI,X-ray" --output predictions.csv --encoder vit-b-32 --pretrained openai
    """
    from medclip_cli.evaluation.classify import classify_images
    from medclip_cli.runtime.devices import resolve_device
    from medclip_cli.evaluation.zeroshot import DEFAULT_TEMPLATE, check_template
    from medclip_cli.models import resolve_model

    names = options.label_list(labels, label)
    templates = [check_template(t) for t in (template or [DEFAULT_TEMPLATE])]
    dicom_window = options.dicom_window(window)
    from medclip_cli.models.defaults import DEFAULT_ENCODER, default_pretrained
    from medclip_cli.models.origin import warn_if_random, weights_origin
    from medclip_cli.training.temperature import MANIFEST_KEY, bundle_temperature

    if model_dir is not None and pretrained is not None:
        raise UsageError("--pretrained applies to --encoder models; a --model bundle carries its weights")
    if explain and output is not None:
        raise UsageError("--explain works on image files, not with --output", hint="run `medclip explain` on the images you want maps of")
    folders = [p for p in images if p.is_dir()]
    if folders and output is None:
        from medclip_cli.errors import ImageError

        raise ImageError(f"{folders[0]}: is a folder, not an image", hint="pass --output predictions.csv (or .jsonl) to classify a folder")
    if output is not None:
        from medclip_cli.evaluation.folder_classify import PredictionWriter

        PredictionWriter.check(output, options.label_list(labels, label))  # before the model is built
    if model_dir is None:  # the study's model when none is named: ViT-B/32 with the OpenAI weights
        encoder = encoder or DEFAULT_ENCODER
        pretrained = default_pretrained(encoder, pretrained)
    model = resolve_model(model_dir, encoder, text_encoder, pretrained).to(resolve_device(device))
    if model_dir is None and (output is not None or explain):  # the table's path says it with its predictions
        warn_if_random(model.manifest, f"{encoder}/{pretrained}")
    if output is not None:
        _classify_to_file(model, images, names, templates, output, recursive, dicom_window, batch_size, as_json)
        return
    if explain:
        from medclip_cli.commands.explain import write_explanations

        write_explanations(model, images, names, templates, explain_dir, dicom_window, as_json)
        return
    origin = weights_origin(model.manifest, model_dir)
    temperature = bundle_temperature(model.manifest) or 1.0
    if temperature != 1.0:
        fitted = model.manifest[MANIFEST_KEY]
        ui.info(f"applying the bundle's temperature T = {temperature:.3g} (fitted on split {fitted.get('fitted_on', '?')} by NLL)")
    with ui.progress(enabled=not as_json and len(images) > 1) as reporter:
        results = classify_images(
            model, images, names, templates, top_k=top_k, window=dicom_window, progress=reporter, temperature=temperature
        )
    failed = [r for r in results if r.error is not None]
    if len(results) == 1 and failed:
        from medclip_cli.errors import ImageError

        raise ImageError(failed[0].error)
    if model_dir is None:  # said with the predictions it is about
        warn_if_random(model.manifest, f"{encoder}/{pretrained}")
    if as_json:
        ui.print_json([r.as_dict() if r.error else {**r.as_dict(), "weights": origin} for r in results])
    else:
        ui.info(f"weights: {origin}")
        for r in results:
            if r.error is not None:
                ui.error(r.error)
                continue
            rows = [(i + 1, lab, f"{p:.4f}") for i, (lab, p) in enumerate(r.predictions)]
            # The path above the table, not as its title: a title folds to the narrow table's width.
            ui.heading(r.image)
            ui.show(ui.table(None, ["#", "label", "probability"], rows))
    if failed:
        raise typer.Exit(1)


def _classify_to_file(model, images, names, templates, output, recursive, window, batch_size, as_json) -> None:
    from medclip_cli.evaluation.folder_classify import classify_folder

    with ui.progress(enabled=not as_json) as reporter:
        summary = classify_folder(
            model, images, names, templates, output, recursive=recursive, window=window, batch_size=batch_size, progress=reporter
        )
    if as_json:
        ui.print_json(summary.as_dict())
        return
    rate = summary.as_dict()["images_per_second"]
    ui.info(
        f"{summary.n_classified} images classified into {output}"
        + (f" ({rate} images/s)" if rate else "")
        + (f"; {summary.n_already_done} already there, skipped" if summary.n_already_done else "")
        + (f"; {summary.n_errors} unreadable (see the error column)" if summary.n_errors else "")
    )
