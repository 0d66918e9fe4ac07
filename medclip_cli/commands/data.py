"""``medclip data``: check and download data sets."""

from __future__ import annotations

import typer

from medclip_cli.errors import NotAvailableError

app = typer.Typer(help="Check and download data sets.", no_args_is_help=True)


@app.command("check")
def check() -> None:
    """Check a data set: images, captions, classes, problems. Not available yet in this version."""
    raise NotAvailableError("medclip data check is not available yet in this version")
