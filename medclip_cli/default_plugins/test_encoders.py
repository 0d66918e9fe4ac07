"""Tiny encoders (a few layers, small images) that exist so tests and CI run on a CPU in seconds.

Like timm's ``test_*`` models they are random-init only; their numbers mean nothing.
"""

from __future__ import annotations

from medclip_cli import hookimpl
from medclip_cli.encoders import EncoderSpec, TowerConfig

EMBED_DIM = 64
TEXT_CFG = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}
VIT_CFG = {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8}
RESNET_CFG = {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "patch_size": None}


def _tower(vision: dict | None, text: dict | None):
    def build(tag: str | None) -> TowerConfig:
        if tag:
            from medclip_cli.errors import UsageError

            raise UsageError(f"--pretrained {tag!r}: test encoders have no pretrained weights; use none")
        return TowerConfig(
            vision_cfg=dict(vision) if vision else None,
            text_cfg=dict(text) if text else None,
            embed_dim=EMBED_DIM,
        )

    return build


@hookimpl
def register_encoders(register):
    register(
        EncoderSpec(
            name="test-vit",
            kind="clip",
            family="vit",
            build=_tower(VIT_CFG, TEXT_CFG),
            embed_dim=EMBED_DIM,
            image_size=VIT_CFG["image_size"],
            context_length=77,
            description="tiny ViT + text transformer for tests (random init)",
        )
    )
    register(
        EncoderSpec(
            name="test-resnet",
            kind="clip",
            family="resnet",
            build=_tower(RESNET_CFG, TEXT_CFG),
            embed_dim=EMBED_DIM,
            image_size=RESNET_CFG["image_size"],
            context_length=77,
            description="tiny ModifiedResNet + text transformer for tests (random init)",
        )
    )
    register(
        EncoderSpec(
            name="test-text",
            kind="text",
            family="transformer",
            build=_tower(None, TEXT_CFG),
            embed_dim=EMBED_DIM,
            context_length=77,
            description="tiny text transformer for tests (random init)",
        )
    )
