"""``medclip finetune``."""

from __future__ import annotations

from medclip_cli.errors import NotAvailableError


def finetune() -> None:
    """Fine-tune a CLIP model on image-caption pairs with the weighted contrastive loss.

    Not available yet in this version.
    """
    raise NotAvailableError("medclip finetune is not available yet in this version")
