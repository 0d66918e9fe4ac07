"""``medclip evaluate``."""

from __future__ import annotations

from medclip_cli.errors import NotAvailableError


def evaluate() -> None:
    """Zero-shot classification and image-caption retrieval over a labelled data set.

    Not available yet in this version.
    """
    raise NotAvailableError("medclip evaluate is not available yet in this version")
