"""``medclip encoders``: what encoders are registered."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from medclip_cli import options, ui


def encoders(
    pattern: Annotated[
        Optional[str],
        typer.Argument(help="Wildcard filter, e.g. 'vit-*' or 'timm:*resnet*'.", show_default=False),
    ] = None,
    as_json: options.Json = False,
) -> None:
    """List the image, text and full-CLIP encoders that plugins registered.

    Examples:

        medclip encoders

        medclip encoders 'timm:*resnet*' --json
    """
    from medclip_cli.encoders import EncoderSpec, find_encoders, namespaces

    found = find_encoders(pattern)
    specs = [s for s in found if isinstance(s, EncoderSpec)]
    names = [s for s in found if isinstance(s, str)]
    if as_json:
        rows = [_spec_dict(s) for s in specs] + [{"name": n} for n in names]
        if pattern is None:
            rows += [
                {"namespace": f"{ns.prefix}:", "kind": ns.kind, "description": ns.description, "plugin": ns.plugin}
                for ns in namespaces()
            ]
        ui.print_json(rows)
        return
    if specs:
        ui.show(
            ui.table(
                "Encoders",
                ["name", "kind", "family", "embed", "input", "pretrained tags", "plugin"],
                [
                    (
                        s.name,
                        s.kind,
                        s.family,
                        s.embed_dim,
                        s.image_size,
                        _tags(s.tags()),
                        s.plugin,
                    )
                    for s in specs
                ],
            )
        )
    published = [s for s in specs if s.hub_id]
    if published:
        ui.show(
            ui.table(
                "Published models (use as --model NAME; `medclip weights fetch NAME` for offline use)",
                ["name", "hub id", "format", "licence", "citation"],
                [(s.name, s.hub_id, s.model_format, s.licence, s.citation) for s in published],
            )
        )
    if names:
        ui.show(ui.table(f"{len(names)} encoders match {pattern!r}", ["name"], [(n,) for n in names]))
    if pattern is None:
        ui.show(
            ui.table(
                "Encoder families (name them as prefix:<name>)",
                ["prefix", "kind", "description", "plugin"],
                [(f"{ns.prefix}:", ns.kind, ns.description, ns.plugin) for ns in namespaces()],
            )
        )
    if not specs and not names:
        ui.info(f"no encoder matches {pattern!r}")


def _tags(tags: tuple[str, ...], limit: int = 4) -> str:
    if len(tags) <= limit:
        return ", ".join(tags) or "none"
    return ", ".join(tags[:limit]) + f", … (+{len(tags) - limit})"


def _spec_dict(s) -> dict:
    return {
        "name": s.name,
        "kind": s.kind,
        "family": s.family,
        "embed_dim": s.embed_dim,
        "image_size": s.image_size,
        "context_length": s.context_length,
        "pretrained_tags": list(s.tags()),
        "description": s.description,
        "plugin": s.plugin,
        **({"hub_id": s.hub_id, "format": s.model_format, "licence": s.licence, "citation": s.citation} if s.hub_id else {}),
    }
