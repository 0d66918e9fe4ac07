"""``medclip explain``: Grad-CAM maps of what drove each label's image–text similarity."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from medclip_cli import options, ui


def explain(
    images: Annotated[List[Path], typer.Argument(help="PNG, JPEG, TIFF (8/16-bit) or DICOM files.", show_default=False)],
    labels: Annotated[Optional[str], typer.Option("--labels", "-l", help="Comma-separated labels.", show_default=False)] = None,
    label: Annotated[
        Optional[List[str]], typer.Option("--label", help="One label (repeat; may contain commas).", show_default=False)
    ] = None,
    template: Annotated[
        Optional[List[str]],
        typer.Option("--template", "-t", help="Prompt template with {} for the label (repeat to ensemble).", show_default=False),
    ] = None,
    window: Annotated[
        Optional[str], typer.Option("--window", help="DICOM window as CENTER,WIDTH (default: the file's).", show_default=False)
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the overlay PNGs and .npy maps.")] = Path("explanations"),
    model_dir: options.ModelDir = None,
    encoder: options.Encoder = None,
    text_encoder: options.TextEncoder = None,
    pretrained: options.Pretrained = None,
    device: options.Device = "auto",
    as_json: options.Json = False,
) -> None:
    """Heat maps of where the image drove each label's similarity (Grad-CAM; ViTs on the last block's patch tokens).

    Writes <image>_<label>.png (overlay with a colour bar) and <image>_<label>.npy (the map, [0, 1]) per label.

    Examples:

        medclip explain scan.png --labels "brain MRI,chest X-ray" --encoder vit-b-32 --pretrained openai --output maps/
    """
    from medclip_cli.evaluation.zeroshot import DEFAULT_TEMPLATE, check_template
    from medclip_cli.models import resolve_model
    from medclip_cli.models.defaults import default_pretrained
    from medclip_cli.runtime.devices import resolve_device

    names = options.label_list(labels, label)
    templates = [check_template(t) for t in (template or [DEFAULT_TEMPLATE])]
    if encoder is not None:  # random weights only when asked: --pretrained none
        pretrained = default_pretrained(encoder, pretrained)
    model = resolve_model(model_dir, encoder, text_encoder, pretrained).to(resolve_device(device))
    write_explanations(model, images, names, templates, output, options.dicom_window(window), as_json)


def write_explanations(model, images, names, templates, output: Path, window, as_json: bool) -> None:
    """Explain each image and render what was written (shared with ``classify --explain``)."""
    from medclip_cli.evaluation.explain import cam_layer, explain_image, save_explanations

    layer = cam_layer(model.module.visual)  # an unsupported tower fails before any image is read
    _check_folder(output)
    stems = _stems(images)
    report = []
    for path in images:
        pixels, explanations = explain_image(model, path, names, templates, window=window)
        written = save_explanations(pixels, explanations, output, stems[str(path)])
        report.append({
            "image": str(path),
            "method": f"Grad-CAM on {layer.where}",
            "labels": [{"label": e.label, "probability": e.probability, "similarity": e.similarity} for e in explanations],
            "files": [str(p) for p in written],
        })
    if as_json:
        ui.print_json(report)
        return
    for item in report:
        rows = [(x["label"], f"{x['probability']:.4f}", f"{x['similarity']:.4f}") for x in item["labels"]]
        ui.show(ui.table(f"{item['image']} ({item['method']})", ["label", "probability", "cosine"], rows))
    ui.info(f"wrote {sum(len(i['files']) for i in report)} files to {output}")


def _check_folder(output: Path) -> None:
    from medclip_cli.errors import OutputError

    if output.exists() and not output.is_dir():
        raise OutputError(f"--output {output}: is a file, not a folder", hint="name a folder for the maps")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"--output {output}: cannot create the folder ({exc.strerror or exc})") from None


def _stems(images) -> dict[str, str]:
    """A file-name stem per image: its own, plus a short digest of its path where two images of
    different folders share one (a/x.png and b/X.png never overwrite each other's maps)."""
    import hashlib

    counts: dict[str, int] = {}
    for path in images:
        counts[Path(path).stem.lower()] = counts.get(Path(path).stem.lower(), 0) + 1
    return {
        str(path): Path(path).stem
        if counts[Path(path).stem.lower()] == 1
        else f"{Path(path).stem}-{hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:8]}"
        for path in images
    }
