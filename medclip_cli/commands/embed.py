"""``medclip embed``: a data set or a folder of images -> one file of embeddings with ids and labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from medclip_cli import options, ui
from medclip_cli.errors import UsageError


def embed(
    data: options.Data = None,
    dataset_kind: options.DatasetKind = None,
    image_column: options.ImageColumn = None,
    caption_column: options.CaptionColumn = None,
    label_column: options.LabelColumns = None,
    split_column: options.SplitColumn = None,
    split: Annotated[
        Optional[List[str]],
        typer.Option("--split", "-s", help="Split to embed (repeat; default: every split).", show_default=False),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Embedding file: .parquet (default format) or .npz.")
    ] = Path("embeddings.parquet"),
    model_dir: options.ModelDir = None,
    encoder: options.Encoder = None,
    text_encoder: options.TextEncoder = None,
    pretrained: options.Pretrained = None,
    text_pretrained: options.TextPretrained = "auto",
    image_size: options.ImageSize = None,
    no_captions: Annotated[bool, typer.Option("--no-captions", help="Embed images only, not their captions.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per forward pass.")] = 64,
    seed: Annotated[int, typer.Option("--seed", help="Seeds torch before the model is built (random-init towers).")] = 0,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the image-embedding cache.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an output file that holds another model's embeddings.")
    ] = False,
    device: options.Device = "auto",
    as_json: options.Json = False,
) -> None:
    """Write L2-normalised image (and caption) embeddings of a data set or image folder to a file.

    One row per image: id, path, split, caption, labels, image_embedding, text_embedding; the
    file's metadata names the model (encoders, weights, weights sha256, preprocessing). Image
    embeddings are cached under MEDCLIP_HOME (shared with `medclip evaluate`); rerunning into a
    file that already holds them computes nothing.

    Examples:

        medclip embed --data MedPix-2-0 --split train --split dev --encoder vit-b-32 --pretrained openai -o medpix.parquet

        medclip embed --data ~/scans --model runs/medpix/best -o scans.npz
    """
    from medclip_cli.evaluation.embed_file import model_identity
    from medclip_cli.evaluation.export import check_output_file, load_embed_datasets, run_embed
    from medclip_cli.models.source import build_from_source, one_model_source, source_label
    from medclip_cli.runtime.devices import resolve_device

    check_output_file(output)
    if data is None:
        from medclip_cli.data import default_data_root

        data = default_data_root()
    data_options = options.column_options(image_column, caption_column, label_column, split_column)
    datasets = load_embed_datasets(data, split or [], dataset_kind, **data_options)
    source = one_model_source(model_dir, encoder, text_encoder, pretrained, text_pretrained, image_size, seed)
    if source is None:
        raise UsageError("no model given", hint="pass --model DIR or --encoder NAME (see `medclip encoders`)")
    model = build_from_source(source).to(resolve_device(device))
    identity = model_identity(model, source_label(source), source)
    with ui.progress(enabled=not as_json) as reporter:
        result = run_embed(
            model, identity, datasets, output,
            captions=not no_captions, batch_size=batch_size, cache=not no_cache, overwrite=overwrite, progress=reporter,
        )
    table = result.table
    summary = {
        "output": str(output),
        "rows": len(table),
        "embed_dim": table.dim,
        "splits": {s: table.splits.count(s) for s in table.split_names()},
        "captions_embedded": 0 if table.text is None else int((~_nan_rows(table.text)).sum()),
        "label_fields": list(table.labels),
        "skipped": table.skipped,
        "up_to_date": result.up_to_date,
        "from_cache": result.from_cache,
        "seconds": round(result.seconds, 3),
        "model": table.identity,
    }
    if as_json:
        ui.print_json(summary)
        return
    rows = [
        ("file", str(output)),
        ("rows", len(table)),
        *[(f"split {s}", n) for s, n in summary["splits"].items()],
        ("embedding size", table.dim),
        ("captions embedded", summary["captions_embedded"]),
        ("label fields", ", ".join(table.labels) or "—"),
        ("model", table.identity["name"]),
        ("weights sha256", table.identity["weights_sha256"]),
        ("status", "up to date (nothing computed)" if result.up_to_date else "from the cache" if result.from_cache else "embedded"),
    ]
    ui.show(ui.table("embeddings", ["", "value"], rows))
    for item in table.skipped[:5]:
        ui.warning(f"skipped image {item['id']} ({item['split']}): {item['reason']}")
    if len(table.skipped) > 5:
        ui.warning(f"skipped {len(table.skipped) - 5} more unreadable images (see the file's metadata)")


def _nan_rows(matrix):
    import numpy as np

    return np.isnan(matrix).any(axis=1)
