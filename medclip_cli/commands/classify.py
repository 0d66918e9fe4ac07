"""``medclip classify``: images against free-text labels."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from medclip_cli import options, ui
from medclip_cli.errors import UsageError


def classify(
    images: Annotated[List[Path], typer.Argument(help="PNG, JPEG, TIFF (8/16-bit) or DICOM files.", show_default=False)],
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
    """
    from medclip_cli.evaluation.classify import classify_images
    from medclip_cli.runtime.devices import resolve_device
    from medclip_cli.evaluation.zeroshot import DEFAULT_TEMPLATE, check_template
    from medclip_cli.models import resolve_model

    names = _labels(labels, label)
    templates = [check_template(t) for t in (template or [DEFAULT_TEMPLATE])]
    dicom_window = _window(window)
    from medclip_cli.models.defaults import DEFAULT_ENCODER, default_pretrained
    from medclip_cli.models.origin import warn_if_random, weights_origin
    from medclip_cli.training.temperature import MANIFEST_KEY, bundle_temperature

    if model_dir is not None and pretrained is not None:
        raise UsageError("--pretrained applies to --encoder models; a --model bundle carries its weights")
    if model_dir is None:  # the study's model when none is named: ViT-B/32 with the OpenAI weights
        encoder = encoder or DEFAULT_ENCODER
        pretrained = default_pretrained(encoder, pretrained)
    model = resolve_model(model_dir, encoder, text_encoder, pretrained).to(resolve_device(device))
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


def _labels(labels: str | None, label: list[str] | None) -> list[str]:
    names = [s.strip() for s in (labels or "").split(",") if s.strip()] + [s.strip() for s in (label or []) if s.strip()]
    if not names:
        raise UsageError("no labels given", hint='pass --labels "a,b,c" or --label A --label B')
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"label given twice: {', '.join(duplicates)}")
    return names


def _window(window: str | None) -> tuple[float, float] | None:
    if window is None:
        return None
    parts = window.split(",")
    try:
        center, width = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"--window {window!r}: expected CENTER,WIDTH such as 40,400") from None
    if not (math.isfinite(center) and math.isfinite(width)):
        raise UsageError(f"--window {window!r}: the center and width must be finite numbers such as 40,400")
    if width <= 0:
        raise UsageError(f"--window {window!r}: the width must be positive")
    return center, width
