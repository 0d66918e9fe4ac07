"""The model of a run: built (or reloaded from a checkpoint), its towers locked, in training mode."""

from __future__ import annotations

import torch
import torch.nn as nn

from medclip_cli.errors import UsageError
from medclip_cli.runtime.kernels import prefer_channels_last
from medclip_cli.training.config import TrainConfig


def build_model(cfg: TrainConfig, device: torch.device, resume=None, progress=None):
    """The run's model on ``device``: seeded from ``cfg.seed``, or the checkpoint ``resume``'s,
    with the towers locked as ``cfg`` says (``progress``: loading it is a stage, named)."""
    from medclip_cli.models import resolve_model
    from medclip_cli.models.bundle import load_bundle
    from medclip_cli.progress import loading_model

    torch.manual_seed(cfg.seed)
    with loading_model(progress, _model_name(cfg, resume)):
        if resume is not None:
            model = load_bundle(resume.path)
            model.manifest = dict(resume.state["manifest"])
            own_tensors(model.module)
        else:
            model = resolve_model(
                cfg.model_dir, cfg.encoder, cfg.text_encoder, cfg.pretrained, cfg.text_pretrained, cfg.image_size
            )
    lock_towers(model.module, cfg)
    model = model.to(device)
    prefer_channels_last(model.module, device)
    return model


def _model_name(cfg: TrainConfig, resume) -> str:
    if resume is not None:
        return f"from the checkpoint {resume.path}"
    if cfg.model_dir is not None:
        return str(cfg.model_dir)
    name = f"{cfg.encoder}/{cfg.pretrained or 'none'}"
    return f"{name} with text encoder {cfg.text_encoder}" if cfg.text_encoder else name


def lock_towers(module: nn.Module, cfg: TrainConfig) -> None:
    """Freeze the towers ``--lock-image`` / ``--lock-text`` name, leaving their last groups/layers trainable."""
    if cfg.lock_image:
        visual = module.visual
        if type(visual).__name__ == "ModifiedResNet":
            # open_clip cannot partially lock its ResNet; its stages are natural groups.
            for p in visual.parameters():
                p.requires_grad = False
            stem = [visual.conv1, visual.bn1, visual.conv2, visual.bn2, visual.conv3, visual.bn3]
            groups = [stem, [visual.layer1], [visual.layer2], [visual.layer3], [visual.layer4], [visual.attnpool]]
            if cfg.lock_image_unlocked > len(groups):
                raise UsageError(f"--lock-image-unlocked: this ResNet has only {len(groups)} groups")
            for group in groups[len(groups) - cfg.lock_image_unlocked :] if cfg.lock_image_unlocked else []:
                for part in group:
                    for p in part.parameters():
                        p.requires_grad = True
        else:
            try:
                module.lock_image_tower(unlocked_groups=cfg.lock_image_unlocked)
            except (AssertionError, NotImplementedError) as exc:
                raise UsageError(
                    f"--lock-image-unlocked {cfg.lock_image_unlocked}: not supported by this image tower ({exc})"
                ) from exc
    if cfg.lock_text:
        module.lock_text_tower(unlocked_layers=cfg.lock_text_unlocked)


@torch.no_grad()
def own_tensors(module: nn.Module) -> None:
    """Give every parameter and buffer its own freshly allocated storage.

    Weights adopted from a file may sit at any offset of one shared buffer; CPU matrix kernels
    can then take another code path (alignment) and round differently, which would make a
    resumed run drift from an uninterrupted one in the last bits.
    """
    for param in module.parameters():
        param.data = param.data.clone(memory_format=torch.contiguous_format)
    for sub in module.modules():
        for name, buf in sub._buffers.items():
            if buf is not None:
                sub._buffers[name] = buf.clone(memory_format=torch.contiguous_format)


def train_mode(module: nn.Module, cfg: TrainConfig) -> None:
    """Training mode, but a wholly frozen image tower keeps its batch-norm statistics (eval mode)."""
    module.train()
    if cfg.lock_image and not any(p.requires_grad for p in module.visual.parameters()):
        module.visual.eval()  # a frozen tower keeps its batch-norm statistics
