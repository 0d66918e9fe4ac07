"""``medclip reproduce``."""

from __future__ import annotations

from medclip_cli.errors import NotAvailableError


def reproduce() -> None:
    """Run the study's experiments from named configs and write a report.

    Not available yet in this version.
    """
    raise NotAvailableError("medclip reproduce is not available yet in this version")
