"""Any timm model as an image tower (``timm:<name>``), paired with a CLIP text tower."""

from __future__ import annotations

from medclip_cli import hookimpl
from medclip_cli.encoders import EncoderNamespace, EncoderSpec, TowerConfig

#: ``--pretrained imagenet`` picks timm's default pretrained tag for the model.
IMAGENET_TAG = "imagenet"


def _list(pattern: str) -> list[str]:
    import timm

    return timm.list_models(pattern or "*")


def _resolve(name: str) -> EncoderSpec | None:
    import timm

    arch, _, _ = name.partition(".")
    if not timm.is_model(arch):
        return None
    tags = tuple(p.partition(".")[2] for p in timm.list_pretrained(f"{arch}.*"))
    cfg = timm.get_pretrained_cfg(name if "." in name else arch)
    image_size = cfg.input_size[-1] if cfg is not None else 224
    family = "vit" if arch.startswith(("vit", "deit", "eva", "beit")) else arch.rstrip("0123456789").split("_")[0]
    return EncoderSpec(
        name=f"timm:{name}",
        kind="image",
        family=family,
        build=lambda tag: _build(name, tag),
        image_size=image_size,
        pretrained_tags=((IMAGENET_TAG,) + tags) if tags else (),
        description=f"timm {arch} image tower with a linear projection",
    )


def _build(name: str, tag: str | None) -> TowerConfig:
    import timm

    from medclip_cli.errors import UsageError

    arch, _, name_tag = name.partition(".")
    model_name = name
    if tag and tag != IMAGENET_TAG:
        model_name = f"{arch}.{tag}"
    cfg = timm.get_pretrained_cfg(model_name)
    if tag and (cfg is None or not timm.list_pretrained(model_name)):
        raise UsageError(
            f"--pretrained {tag!r}: timm has no pretrained weights {model_name!r}",
            hint=f"see `medclip encoders 'timm:{arch}'` for its tags, or use --pretrained none",
        )
    if tag:
        _check_timm_weights_available(model_name)
    image_size = cfg.input_size[-1] if cfg is not None else 224
    preprocess = {"interpolation": "bicubic", "resize_mode": "shortest"}
    if cfg is not None:
        preprocess.update(mean=list(cfg.mean), std=list(cfg.std), interpolation=cfg.interpolation or "bicubic")
    return TowerConfig(
        vision_cfg={
            "timm_model_name": model_name,
            "timm_model_pretrained": bool(tag),
            "timm_pool": "avg",
            "timm_proj": "linear",
            "image_size": image_size,
        },
        preprocess=preprocess,
    )


def _check_timm_weights_available(model_name: str) -> None:
    import timm

    from medclip_cli.models.pretrained import cached_hf_file, ensure_can_download

    cfg = timm.get_pretrained_cfg(model_name)
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id and any(cached_hf_file(hub_id, f) for f in ("model.safetensors", "pytorch_model.bin")):
        return
    ensure_can_download(
        f"timm weights for {model_name}",
        alternative="use --pretrained none (random init) or a model bundle",
    )


@hookimpl
def register_encoder_namespaces(register):
    register(
        EncoderNamespace(
            prefix="timm",
            kind="image",
            description="any timm model as the image tower, e.g. timm:resnet50",
            list_names=_list,
            resolve=_resolve,
        )
    )
