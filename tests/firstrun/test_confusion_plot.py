"""The confusion-matrix picture keeps every label inside it, also with 19 long class names."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medclip_cli.evaluation.metrics import confusion_figure, save_confusion_png

REGIONS = [
    "Head", "Thorax", "Abdomen", "Spine", "Genitourinary", "Cardiovascular", "Musculoskeletal", "Gastrointestinal",
    "Neurological", "Pulmonary", "Hepatobiliary", "Endocrine", "Reproductive", "Urinary", "Vascular", "Lymphatic",
    "Dermatologic", "Ophthalmic", "Otolaryngologic",
]  # fmt: skip


def _drawn_texts(figure) -> list:
    texts = []
    for axes in figure.axes:
        texts += [axes.xaxis.label, axes.yaxis.label, axes.title, *axes.texts]
        for axis in (axes.xaxis, axes.yaxis):
            low, high = sorted(axis.get_view_interval())
            ticks = zip(axis.get_majorticklocs(), axis.get_ticklabels())
            texts += [label for loc, label in ticks if low <= loc <= high]  # ticks past the end are not drawn
    return [t for t in texts if t.get_visible() and t.get_text()]


def _outside(figure) -> list[str]:
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    box = figure.bbox
    texts = _drawn_texts(figure)
    assert "true" in [t.get_text() for t in texts]
    return [
        t.get_text() for t in texts
        if (b := t.get_window_extent(renderer)).x0 < box.x0 or b.y0 < box.y0 or b.x1 > box.x1 or b.y1 > box.y1
    ]  # fmt: skip


@pytest.mark.parametrize("names", [["CT", "MR"], [f"{r} and its neighbouring structures" for r in REGIONS]])
def test_every_label_is_inside_the_picture(names, tmp_path):
    counts = np.random.default_rng(0).integers(0, 50, size=(len(names), len(names)))
    figure = confusion_figure(counts, names, "location")
    assert _outside(figure) == []
    path = save_confusion_png(counts, names, tmp_path / "c.png", "location")
    width, height = figure.get_size_inches() * 100
    assert Image.open(path).size == (round(width), round(height))  # the picture is the figure checked
