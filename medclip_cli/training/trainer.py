"""A model ready to train: :func:`build_trainer` gives a :class:`Trainer` that takes optimizer steps.

The trainer holds what one optimizer step needs (model, AdamW, schedule, gradient scaler, weight
average, loss, the step module, the non-finite guard) and the run's position (step, epoch,
position in the epoch), and turns them into a checkpoint's state and back. ``train()`` builds
one for a run; the benchmarks build one the same way to time the step on batches in memory.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn as nn

from medclip_cli.training import checkpoint as ckpt
from medclip_cli.training import distributed as dist_
from medclip_cli.models.text_padding import token_lengths
from medclip_cli.runtime.forward import ClipStep
from medclip_cli.runtime.kernels import autocast, compile_blocks, cpu_linear
from medclip_cli.errors import UsageError
from medclip_cli.training.batches import random_resized_crop
from medclip_cli.training.config import PRETRAINED_LR, SCRATCH_LR, TrainConfig, resolve_precision
from medclip_cli.training.distributed import DistInfo
from medclip_cli.training.ema import WeightAverage
from medclip_cli.training.guard import FiniteGuard, NonFiniteLoss, StepAbandoned, StopFlag
from medclip_cli.training.loss import MAX_LOGIT_SCALE
from medclip_cli.training.sigmoid_loss import make_loss
from medclip_cli.training.optim import build_optimizer, build_scheduler, warmup_steps_for
from medclip_cli.training.towers import build_model, train_mode


def default_lr(cfg: TrainConfig, model) -> float:
    """``cfg.lr``, else 1e-5 when starting from pretrained weights (a bundle or named ones), else 5e-4."""
    if cfg.lr is not None:
        return cfg.lr
    pretrained = cfg.model_dir is not None or model.manifest.get("pretrained") or model.manifest.get("text_pretrained")
    return PRETRAINED_LR if pretrained else SCRATCH_LR


def build_trainer(
    cfg: TrainConfig,
    total_steps: int,
    *,
    device: torch.device | None = None,
    info: DistInfo | None = None,
    model=None,
) -> "Trainer":
    """A trainer for ``total_steps`` optimizer steps (the schedule fits them), at step 0.

    ``model``: the run's model (:func:`~medclip_cli.training.towers.build_model`); built from
    ``cfg`` when not given. ``device``: resolved from ``cfg.device`` when not given; ``info``:
    the process group (one process when not given).
    """
    if device is None:
        from medclip_cli.runtime.devices import resolve_device

        device = resolve_device(cfg.device)
    info = info or DistInfo()
    if model is None:
        model = build_model(cfg, device)
    return Trainer(cfg, model, device, info, total_steps, default_lr(cfg, model))


class Trainer:
    """Optimizer steps on ``model`` (see :func:`build_trainer`); :meth:`train_step` takes one."""

    def __init__(self, cfg: TrainConfig, model, device: torch.device, info: DistInfo, total_steps: int, lr: float):
        self.cfg, self.model, self.device, self.info = cfg, model, device, info
        self.precision = resolve_precision(cfg.precision, device)
        module = model.module
        self.optimizer = build_optimizer(module, lr, cfg.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, total_steps, warmup_steps_for(total_steps, cfg.warmup))
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.ema = WeightAverage(module, cfg.ema_decay) if cfg.ema_decay else None
        self.guard = FiniteGuard(self.optimizer, self.scaler, device)
        self.step, self.epoch, self.position = 0, 0, 0  # optimizer steps done; epoch; steps into it
        self.last_checkpoint: Path | None = None
        self.data_wait = 0.0  # seconds the last step waited for its batches
        # SigLIP models train with their own sigmoid loss (training/sigmoid_loss.py), CLIPs with the weighted one.
        self.loss_fn = make_loss(model, cfg.loss_weight, cfg.soft_targets, info.rank, info.world_size)
        step_module: nn.Module = ClipStep(module)
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            step_module = DistributedDataParallel(
                step_module, device_ids=[device.index] if device.type == "cuda" else None
            )
        if cfg.compile:
            compile_blocks(module)
        self.step_module = step_module
        self._rng_before: dict | None = None
        if device.type == "cpu" and not info.enabled and not cfg.compile:
            # Backward on the CPU runs in this thread: a no-op hook per weight lets a stop request
            # in (Python runs signal handlers only between its own instructions), so a long
            # backward is abandoned within a layer, not at its end.
            for p in module.parameters():
                if p.requires_grad:
                    p.register_hook(_signal_point)
        train_mode(module, cfg)  # a loaded bundle comes in eval mode (dropout, batch norm)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def train_step(self, batch_iter, stop: StopFlag | None = None) -> torch.Tensor:
        """One optimizer step on the next ``grad_accum`` batches of ``batch_iter`` (each
        ``(pixels, tokens, groups, augment)`` as :class:`~medclip_cli.training.batches.Batches`
        yields them); returns its loss as a 0-dim tensor on the device, not yet read.

        Nothing in the step waits for the device (no ``.item()``, no copy back): the host queues
        the next step's kernels while the device still runs this one. A non-finite loss is caught
        on the device where the fused AdamW can skip the update by itself (:class:`FiniteGuard`).

        With ``stop``, a stop request during the compute part (batches, forward, backward) raises
        :class:`~medclip_cli.training.guard.StepAbandoned`: nothing of the step is kept (gradients
        dropped, the random state as before it), so the run's last step is still the last one
        done. The commit part (update, schedule, average, counters) always runs to its end.
        """
        if stop is not None and stop.abandon:
            self._rng_before = ckpt.rng_state(self.device)
        try:
            with stop.interruptible() if stop is not None else nullcontext():
                total = self._compute(batch_iter)
        except StepAbandoned:
            self.abandon_step()
            raise
        return self._commit(total)

    def abandon_step(self) -> None:
        """Drop a step stopped half-way: its gradients, and the random numbers it drew."""
        self.optimizer.zero_grad(set_to_none=True)
        if self._rng_before is not None:
            ckpt.restore_rng_state(self._rng_before, self.device)

    def _compute(self, batch_iter) -> torch.Tensor:
        """The step's loss and gradients; nothing of the run's state changes."""
        from medclip_cli.data.preprocess import normalize_batch

        cfg = self.cfg
        total = None
        self.data_wait = 0.0
        for k in range(cfg.grad_accum):
            waited = time.perf_counter()
            pixels, tokens, groups, augment = next(batch_iter)
            self.data_wait += time.perf_counter() - waited
            lengths = token_lengths(self.model.module, tokens)  # from the host copy: no read-back
            images = normalize_batch(pixels, self.model.preprocess, self.device)
            if augment is not None:
                images = random_resized_crop(images, augment)
            tokens = tokens.to(self.device, non_blocking=True)
            groups = groups.to(self.device, non_blocking=True) if groups is not None else None
            sync = self.step_module.no_sync() if self.info.enabled and k < cfg.grad_accum - 1 else nullcontext()
            with sync:
                with autocast(self.precision, self.device), self.linear_kernels():
                    image_f, text_f, scale = self.step_module(images, tokens, lengths)
                loss = self.loss_fn(image_f, text_f, scale, groups)
                self.scaler.scale(loss / cfg.grad_accum).backward()
            total = loss.detach() if total is None else total + loss.detach()
        return dist_.all_mean_tensor(total / cfg.grad_accum)

    def _commit(self, total: torch.Tensor) -> torch.Tensor:
        """The update of the computed step, then the counters (a stop request waits for its end)."""
        cfg = self.cfg
        bad = self.guard.guard(total, self.step + 1)
        if bad is not None:
            self._raise_non_finite(bad, self.step + 1)
        if cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.guard.after_step()
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        with torch.no_grad():  # CLIP's clamp: the temperature never exceeds 100
            if self.model.logit_bias is None:  # CLIP's cap; SigLIP's scale is learned with its bias, uncapped
                self.model.module.logit_scale.clamp_(0, math.log(MAX_LOGIT_SCALE))
        if self.ema is not None:
            self.ema.update()
        self.step += 1
        self.position += 1
        return total

    def linear_kernels(self):
        # Compiled blocks choose their own kernels; a mode would only get in the way of tracing.
        return nullcontext() if self.cfg.compile else cpu_linear(self.device, self.precision)

    def check_finite(self) -> None:
        """Stop (:class:`NonFiniteLoss`) if an update was skipped on the device for a non-finite loss."""
        skipped = self.guard.first_skipped()
        if skipped is not None:
            self._raise_non_finite(*skipped, skipped=True)

    def _raise_non_finite(self, value: float, step: int, skipped: bool = False) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        where = (
            f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else "no checkpoint was written yet"
        )
        what = (
            f"its update was skipped and the run stopped at step {self.step}, before writing anything"
            if skipped and step != self.step
            else "stopped before applying it"
        )
        raise NonFiniteLoss(
            f"the loss became {value} at step {step} (epoch {self.epoch + 1}); {what}",
            hint=f"{where}; lower --lr"
            + (" or use --precision fp32" if self.precision != "fp32" else "")
            + (", then --resume" if self.last_checkpoint else ""),
        )

    # -- checkpoints ----------------------------------------------------------------------
    def state(self) -> dict:
        """The trainer's part of a checkpoint (the run adds its own: best, history, ...)."""
        return {
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": ckpt.rng_state(self.device),
        }

    def restore(self, resume: ckpt.Checkpoint) -> None:
        """Continue from the checkpoint ``resume`` (written by a run with the same settings)."""
        state = resume.state
        if state.get("world_size", 1) != self.info.world_size:
            raise UsageError(
                f"--resume: the run used {state.get('world_size', 1)} process(es), this one has {self.info.world_size}",
                hint="resume with the same number of processes",
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        ckpt.restore_rng_state(state["rng"], self.device)
        self.step, self.epoch, self.position = int(state["step"]), int(state["epoch"]), int(state["position"])
        self.last_checkpoint = resume.path



def _signal_point(grad):
    """A weight's gradient hook that changes nothing (see ``Trainer.__init__``)."""
    return None
