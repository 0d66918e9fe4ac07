"""``medclip weights``: pre-download model weights for a machine without network."""

from __future__ import annotations

from typing import Annotated

import typer

from medclip_cli import options, ui

app = typer.Typer(help="Download model weights ahead of an offline run.", no_args_is_help=True)


@app.command("fetch")
def fetch(
    names: Annotated[
        list[str],
        typer.Argument(
            help="Model names (biomedclip, pubmedclip, plip, quiltnet, medsiglip), hub ids (org/name, hf-hub:org/name[@rev]) or encoder[:tag] (vit-b-32, vit-b-32:openai).",
            show_default=False,
        ),
    ],
    as_json: options.Json = False,
) -> None:
    """Download models into the local caches (Hugging Face hub cache, open_clip's), so that a later
    run with HF_HUB_OFFLINE=1 (or without network) finds them. Copy the cache folder (HF_HOME)
    to the offline machine.

    Examples:

        medclip weights fetch biomedclip pubmedclip

        medclip weights fetch vit-b-32:openai

        medclip weights fetch hf-hub:wisdomik/QuiltNet-B-32 --json
    """
    from medclip_cli.models.hub import hub_cache_dir
    from medclip_cli.models.sources import fetch_model

    rows = []
    for name in names:
        rows += fetch_model(name)
    if as_json:
        ui.print_json({"cache": str(hub_cache_dir()), "fetched": rows})
        return
    ui.show(
        ui.table(
            "Fetched",
            ["model", "hub id", "revision", "local path"],
            [(r["what"], r["hub_id"] or "-", r["hub_revision"][:12] or "-", r["path"]) for r in rows],
        )
    )
    ui.info(f"offline use: copy {hub_cache_dir()} to the same place there and set HF_HUB_OFFLINE=1")
