"""An example medclip plugin: registers one image encoder, ``example-convnext-atto``.

Install it with ``pip install plugins/medclip-example-encoder``; ``medclip encoders`` then lists
it, and ``--encoder example-convnext-atto`` pairs it with CLIP's text tower.
"""

from __future__ import annotations

from medclip_cli import hookimpl
from medclip_cli.encoders import EncoderSpec, TowerConfig


def _build(tag: str | None) -> TowerConfig:
    # Heavy imports (torch, timm) belong inside functions: plugins load at every command start.
    return TowerConfig(
        vision_cfg={
            "timm_model_name": "convnext_atto",
            "timm_model_pretrained": tag is not None,
            "timm_pool": "avg",
            "timm_proj": "linear",
            "image_size": 64,
        },
    )


@hookimpl
def register_encoders(register):
    register(
        EncoderSpec(
            name="example-convnext-atto",
            kind="image",
            family="convnext",
            build=_build,
            image_size=64,
            description="example plugin: timm convnext_atto image tower at 64 px",
        )
    )
