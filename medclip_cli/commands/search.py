"""``medclip search``: the nearest images of an embedding file to a text or an example image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from medclip_cli import options, ui
from medclip_cli.errors import UsageError


def search(
    embeddings: Annotated[Path, typer.Argument(help="Embedding file from `medclip embed` (.parquet or .npz).", show_default=False)],
    query: Annotated[Optional[str], typer.Argument(help="Text to search for.", show_default=False)] = None,
    image: Annotated[
        Optional[Path], typer.Option("--image", "-i", help="Search with an example image instead of text.", show_default=False)
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="How many images to return.")] = 10,
    split: Annotated[Optional[str], typer.Option("--split", "-s", help="Only images of this split.", show_default=False)] = None,
    sheet: Annotated[
        Optional[Path], typer.Option("--sheet", help="Write a contact-sheet PNG of the hits here.", show_default=False)
    ] = None,
    model_dir: options.ModelDir = None,
    encoder: options.Encoder = None,
    text_encoder: options.TextEncoder = None,
    pretrained: options.Pretrained = None,
    backend: Annotated[str, typer.Option("--backend", help="auto (faiss past a size, where installed), numpy or faiss.")] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seed of random-init towers (as given to `medclip embed`).")] = 0,
    device: options.Device = "auto",
    as_json: options.Json = False,
) -> None:
    """Find the images nearest to a text or an example image (cosine similarity), best first.

    The query is embedded by the file's own model, built again from the identity the file records
    (or the --model/--encoder given, which must be that same model and preprocessing).

    Examples:

        medclip search medpix.parquet "axial CT with pneumothorax" --top-k 10

        medclip search medpix.parquet --image query.png --sheet hits.png

        medclip search scans.npz "sagittal MRI of the lumbar spine" --split dev --json
    """
    from medclip_cli.evaluation.embed_file import read_embedding_file
    from medclip_cli.evaluation.search import choose_backend
    from medclip_cli.evaluation.search_query import image_query, query_model, search_table, text_query
    from medclip_cli.models.source import one_model_source

    if (query is None) == (image is None):
        raise UsageError("give a query text or --image FILE (one of the two)")
    if image is not None and not image.is_file():
        raise UsageError(f"--image {image}: no such file")
    choose_backend(0, backend)  # an unknown or missing backend is refused before the model is built
    table = read_embedding_file(embeddings)
    if split is not None:
        table = table.split(split)
    source = one_model_source(model_dir, encoder, text_encoder, pretrained, seed=seed)
    model = query_model(table, source, str(embeddings), device)
    vector = image_query(model, image) if image is not None else text_query(model, query)
    hits, used = search_table(table, vector, top_k, backend)
    what = f"image {image}" if image is not None else repr(query)
    written = None
    if sheet is not None:
        from medclip_cli.evaluation.contact_sheet import save_contact_sheet

        written = save_contact_sheet(hits, sheet, f"{what} in {embeddings.name} ({len(table)} images)")
    if as_json:
        ui.print_json({"query": query, "image": None if image is None else str(image), "file": str(embeddings),
                       "rows_searched": len(table), "backend": used, "hits": [h.as_dict() for h in hits]})
        return
    rows = [(h.rank, f"{h.score:.4f}", h.id, h.split, ", ".join(f"{k}={v}" for k, v in h.labels.items()) or "—") for h in hits]
    ui.show(ui.table(f"nearest to {what} ({len(table)} images, {used})", ["#", "cosine", "id", "split", "labels"], rows))
    if written is not None:
        ui.info(f"contact sheet: {written}")
