"""The resolved run, shown before it starts: :class:`TrainPlan` and :func:`make_plan`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from medclip_cli.errors import UsageError
from medclip_cli.training.config import TrainConfig
from medclip_cli.training.optim import warmup_steps_for


@dataclass
class TrainPlan:
    """The resolved run, shown before it starts."""

    device: str
    precision: str
    world_size: int
    train_pairs: int
    val_pairs: int
    skipped: int
    steps_per_epoch: int
    epochs: int
    total_steps: int
    warmup_steps: int
    batch_size: int
    effective_batch: int
    lr: float
    weight_decay: float
    trainable_params: int
    total_params: int
    resumed_from: str | None = None
    start_step: int = 0


def make_plan(
    cfg: TrainConfig, model, device, precision: str, world: int, n_train: int, n_val: int, skipped: int, lr: float, resume
) -> TrainPlan:
    """Steps per epoch and in all (``--max-steps`` caps them), batches, parameters of the run."""
    global_batch = cfg.batch_size * world
    micro = n_train // global_batch
    if micro < cfg.grad_accum:
        raise UsageError(
            f"--batch-size {cfg.batch_size} × {world} process(es) × --grad-accum {cfg.grad_accum} "
            f"needs more than the {n_train} training pairs",
            hint="lower --batch-size or --grad-accum",
        )
    per_epoch = micro // cfg.grad_accum
    total = cfg.epochs * per_epoch if cfg.max_steps is None else min(cfg.epochs * per_epoch, cfg.max_steps)
    params = list(model.module.parameters())
    return TrainPlan(
        device=str(device),
        precision=precision,
        world_size=world,
        train_pairs=n_train,
        val_pairs=n_val,
        skipped=skipped,
        steps_per_epoch=per_epoch,
        epochs=math.ceil(total / per_epoch),
        total_steps=total,
        warmup_steps=warmup_steps_for(total, cfg.warmup),
        batch_size=cfg.batch_size,
        effective_batch=global_batch * cfg.grad_accum,
        lr=lr,
        weight_decay=cfg.weight_decay,
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        total_params=sum(p.numel() for p in params),
        resumed_from=str(resume.path) if resume else None,
        start_step=int(resume.state["step"]) if resume else 0,
    )
