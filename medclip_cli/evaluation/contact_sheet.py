"""A contact sheet: the hits of a search as thumbnails in a grid, each with rank, score and labels."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

from medclip_cli.atomic import atomic_open

THUMB = 192
TEXT_LINES = 4
LINE_HEIGHT = 12


def save_contact_sheet(hits: Sequence, path: str | Path, title: str, columns: int = 5) -> Path:
    """``hits``: objects with rank, score, id, path and labels (``search_query.Hit``)."""
    from PIL import Image, ImageDraw

    from medclip_cli.data.images import load_image
    from medclip_cli.errors import ImageError

    columns = max(1, min(columns, len(hits)))
    rows = (len(hits) + columns - 1) // columns
    cell_h = THUMB + TEXT_LINES * LINE_HEIGHT + 8
    header = 2 * LINE_HEIGHT + 8
    sheet = Image.new("RGB", (columns * (THUMB + 8) + 8, header + rows * cell_h + 8), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 6), textwrap.shorten(title, width=columns * 30), fill="black")
    for i, hit in enumerate(hits):
        x = 8 + (i % columns) * (THUMB + 8)
        y = header + (i // columns) * cell_h
        try:
            image = load_image(hit.path)
            image.thumbnail((THUMB, THUMB))
            sheet.paste(image, (x + (THUMB - image.width) // 2, y + (THUMB - image.height) // 2))
        except ImageError:
            draw.rectangle((x, y, x + THUMB - 1, y + THUMB - 1), outline="red")
            draw.text((x + 6, y + THUMB // 2), "unreadable", fill="red")
        labels = ", ".join(f"{v}" for v in hit.labels.values())
        lines = [f"#{hit.rank}  {hit.score:.4f}", textwrap.shorten(hit.id, 30), *textwrap.wrap(labels, 30)[: TEXT_LINES - 2]]
        for j, line in enumerate(lines):
            draw.text((x, y + THUMB + 4 + j * LINE_HEIGHT), line, fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as fh:
        sheet.save(fh, format="PNG")
    return path
