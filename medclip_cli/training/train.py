"""Fine-tuning a CLIP model on image-caption pairs: :func:`train` runs a :class:`TrainConfig`.

This module is the run: settings, plan, the step, logging, checkpoints, bundles and resume. The
data and its batches live in :mod:`~medclip_cli.training.batches`, the training forward in
:mod:`~medclip_cli.runtime.forward`, each epoch's validation in :mod:`~medclip_cli.training.validate`.
A checkpoint needs only (epoch, position) to continue exactly where the run stopped, since the
data order and every random choice of a batch are seeded by their place in the run.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from contextlib import closing, nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from medclip_cli.atomic import write_text_atomic
from medclip_cli.training import checkpoint as ckpt
from medclip_cli.training import distributed as dist_
from medclip_cli.training.batches import Batches, load_pairs, random_resized_crop
from medclip_cli.training.ema import WeightAverage
from medclip_cli.runtime.forward import ClipStep, token_lengths
from medclip_cli.runtime.kernels import autocast, compile_blocks, cpu_linear, prefer_channels_last
from medclip_cli.training.loss import MAX_LOGIT_SCALE, check_loss_weight
from medclip_cli.training.sigmoid_loss import make_loss
from medclip_cli.training.optim import build_optimizer, build_scheduler, warmup_steps_for
from medclip_cli.progress import NullProgress, ProgressReporter
from medclip_cli.training.validate import validate
from medclip_cli.errors import OutputError, TrainingError, UsageError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PRETRAINED_LR = 1e-5
SCRATCH_LR = 5e-4
# Settings that may differ when a run is resumed: they do not change what is computed.
RESUME_FREE = ("device", "workers", "checkpoint_every", "log_every", "resume", "strict")
_OPTION_NAMES = {
    "weight_decay": "--wd",
    "dataset_format": "--dataset",
    "val_tasks": "--val-task",
    "label_columns": "--label-column",
    "model_dir": "--model",
}


@dataclass
class TrainConfig:
    """Everything a fine-tuning run depends on (``config.json`` of the run holds it)."""

    output: Path  # the run folder: last/, best/, checkpoints/, metrics.jsonl, config.json
    data: Path
    # Model: a bundle folder, or encoders by name (+ where their weights come from).
    model_dir: Path | None = None
    encoder: str | None = None
    text_encoder: str | None = None
    pretrained: str | None = None
    text_pretrained: str | None = "auto"
    image_size: int | None = None
    # Data.
    dataset_format: str | None = None
    # load_dataset options of both splits, e.g. which CSV/JSONL columns hold the image path and
    # the caption ({"image_column": "path", "caption_column": "report"}); JSON values only.
    dataset_options: dict = field(default_factory=dict)
    split: str = "train"
    val_split: str | None = "dev"  # None: no validation
    val_tasks: list[str] = field(default_factory=list)  # label fields scored zero-shot each epoch
    select_metric: str = "val_loss"  # picks best/ ; lower is better for losses and ranks
    strict: bool = False  # an unreadable image stops the run instead of being skipped
    # Loss.
    loss_weight: float = 0.5  # λ of λ·CE(image→text) + (1−λ)·CE(text→image)
    soft_targets: bool = False
    soft_label: str | None = None  # soft targets by this label field instead of by caption
    # Label text: with probability ``label_text_prob`` a pair's caption is replaced, for one step,
    # by one prompt picked at random among those naming its labels (every template of each field
    # of ``label_text_fields`` in the prompt set ``label_text_prompts``, filled with the readable
    # class name: the prompts zero-shot evaluation uses). Supervision from the training split's
    # own labels. With soft targets by caption, a prompt is a positive of every image in the batch
    # with the class it names, whatever its template (UniCL-style; ``training/loss.py``).
    label_text_fields: list[str] = field(default_factory=list)
    label_text_prob: float = 0.0
    label_text_prompts: str | None = None  # a prompt-set name or file; None: the seed set
    # Optimisation.
    epochs: int = 10
    batch_size: int = 32  # per process; negatives come from the whole global batch
    lr: float | None = None  # None: 1e-5 when starting from pretrained weights, else 5e-4
    weight_decay: float = 0.1
    warmup: float = 0.1  # fraction of the steps (< 1) or a number of steps (≥ 1)
    grad_accum: int = 1  # optimizer step every k batches (each batch is its own contrastive batch)
    grad_clip: float | None = 1.0
    # Validate and save an exponential moving average of the weights with this decay (e.g.
    # 0.998); 0: the weights as trained (``medclip_cli/training/ema.py``).
    ema_decay: float = 0.0
    precision: str = "auto"
    max_steps: int | None = None  # stop after this many optimizer steps (the schedule fits them)
    seed: int = 0
    augment: bool = False  # random resized crop (scale 0.8–1); never a horizontal flip
    lock_image: bool = False
    lock_image_unlocked: int = 0  # last groups of a locked image tower left trainable
    lock_text: bool = False
    lock_text_unlocked: int = 0
    # With the text transformer wholly locked, embed every training text once before the first
    # step (eval mode: no dropout) and train only the projection on those features: the same
    # model, without a text forward pass per step. Hugging Face text towers only.
    text_feature_cache: bool = False
    # Running.
    device: str = "auto"
    # torch.compile each transformer block (a convolutional image tower whole), in place: fused
    # kernels and fewer launches on a GPU; the first steps of each shape pay the compilation.
    compile: bool = False
    workers: int = 1  # threads preparing batches ahead of the step (0: in the training thread)
    checkpoint_every: int = 200  # steps; a checkpoint is also written at every epoch end
    log_every: int = 10
    resume: bool = False

    def as_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, raw: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        for key in ("output", "data", "model_dir"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        return cls(**values)


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


@dataclass
class TrainResult:
    """What a finished run produced."""

    output: Path
    last: Path
    best: Path | None
    steps: int
    epochs_done: int
    best_metric: str | None
    best_value: float | None
    best_epoch: int | None
    history: list[dict]


class TrainEvents:
    """Hooks for a front end: the plan before the first step and each validation's numbers."""

    def on_plan(self, plan: TrainPlan, config: TrainConfig) -> None:
        pass

    def on_validation(self, record: dict) -> None:
        pass


class TrainingInterrupted(TrainingError):
    """Ctrl-C: a checkpoint was saved; the run can be resumed."""

    exit_code = 130

    def __init__(self, step: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted at step {step}; checkpoint saved in {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint


class NonFiniteLoss(TrainingError):
    """The loss became NaN or infinite."""


def lower_is_better(metric: str) -> bool:
    return metric.endswith("loss") or metric.endswith("median_rank")


def metric_names(val_tasks: Sequence[str]) -> list[str]:
    names = ["val_loss"]
    for k in (1, 5, 10):
        names += [f"image_to_text_R@{k}", f"text_to_image_R@{k}"]
    names += ["image_to_text_median_rank", "text_to_image_median_rank"]
    return names + [f"zeroshot_{t}_acc" for t in val_tasks]


def check_config(cfg: TrainConfig) -> None:
    """Usage errors before anything is loaded."""
    check_loss_weight(cfg.loss_weight)
    positive = {
        "--batch-size": cfg.batch_size,
        "--epochs": cfg.epochs,
        "--grad-accum": cfg.grad_accum,
        "--log-every": cfg.log_every,
    }
    for option, value in positive.items():
        if not isinstance(value, int) or value <= 0:
            raise UsageError(f"{option} must be a positive whole number, not {value}")
    if cfg.max_steps is not None and cfg.max_steps <= 0:
        raise UsageError(f"--max-steps must be positive, not {cfg.max_steps}")
    if cfg.lr is not None and not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise UsageError(f"--lr must be a positive number, not {cfg.lr}")
    if not (cfg.weight_decay >= 0 and math.isfinite(cfg.weight_decay)):
        raise UsageError(f"--wd must be zero or positive, not {cfg.weight_decay}")
    if cfg.grad_clip is not None and not (cfg.grad_clip >= 0 and math.isfinite(cfg.grad_clip)):
        # clip_grad_norm_ with a negative norm flips every gradient: training would climb the loss.
        raise UsageError(f"--grad-clip must be zero (off) or positive, not {cfg.grad_clip}")
    if not (0.0 <= cfg.ema_decay < 1.0):
        raise UsageError(f"--ema-decay must be at least 0 (off) and below 1, not {cfg.ema_decay}")
    if not (cfg.warmup >= 0 and math.isfinite(cfg.warmup)):
        raise UsageError(f"--warmup must be a fraction of the steps (0–1) or a number of steps, not {cfg.warmup}")
    if cfg.precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, not {cfg.precision!r}")
    if cfg.checkpoint_every < 0 or cfg.workers < 0:
        raise UsageError("--checkpoint-every and --workers must be zero or positive")
    if cfg.soft_label and not cfg.soft_targets:
        raise UsageError("--soft-label needs --soft-targets")
    if not (0.0 <= cfg.label_text_prob <= 1.0):
        raise UsageError(f"--label-text-prob must be between 0 and 1, not {cfg.label_text_prob}")
    if cfg.label_text_prob > 0 and not cfg.label_text_fields:
        raise UsageError("--label-text-prob needs --label-text-field (the label fields to name)")
    if cfg.lock_image_unlocked and not cfg.lock_image or cfg.lock_text_unlocked and not cfg.lock_text:
        raise UsageError("unlocked groups/layers only apply with --lock-image / --lock-text")
    if cfg.text_feature_cache and (not cfg.lock_text or cfg.lock_text_unlocked):
        raise UsageError("--text-feature-cache needs a wholly locked text tower (--lock-text, no unlocked layers)")
    if cfg.lock_image_unlocked < 0 or cfg.lock_text_unlocked < 0:
        raise UsageError("the number of unlocked groups/layers must be zero or positive")
    if cfg.model_dir is not None and cfg.image_size is not None:
        raise UsageError("--image-size applies to --encoder; a --model bundle keeps its own input size")
    if not isinstance(cfg.dataset_options, dict):
        raise UsageError(f"data-set options must be a table of option names, not {cfg.dataset_options!r}")
    if cfg.val_split is None and cfg.val_tasks:
        raise UsageError("--val-task needs a validation split (drop --val-split none)")
    known = metric_names(cfg.val_tasks)
    if cfg.select_metric not in known:
        raise UsageError(f"--select-metric {cfg.select_metric!r} is not computed (choose from: {', '.join(known)})")


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise UsageError("--precision fp16 needs a GPU; use bf16 or fp32 on the CPU")
    return precision


def _lock(module: nn.Module, cfg: TrainConfig) -> None:
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
def _own_tensors(module: nn.Module) -> None:
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


def _changed_setting(old: dict, new: dict) -> tuple[str, object, object] | None:
    """The first setting that differs from the resumed run's: (option, value now, value then)."""
    for key, value in new.items():
        if key in RESUME_FREE or key not in old:
            continue
        if key == "dataset_options" and isinstance(old[key], dict) and isinstance(value, dict):
            # Each data-set option is its own CLI option (--image-column ...): name the one that changed.
            for name in sorted({*value, *old[key]}):
                if value.get(name) != old[key].get(name):
                    return _option_name(name), value.get(name), old[key].get(name)
        elif old[key] != value:
            return _option_name(key), value, old[key]
    return None


def _option_name(key: str) -> str:
    return _OPTION_NAMES.get(key, "--" + key.replace("_", "-"))


def _train_mode(module: nn.Module, cfg: TrainConfig) -> None:
    module.train()
    if cfg.lock_image and not any(p.requires_grad for p in module.visual.parameters()):
        module.visual.eval()  # a frozen tower keeps its batch-norm statistics


# --------------------------------------------------------------------------------------------
# The run


def train(
    config: TrainConfig, progress: ProgressReporter | None = None, events: TrainEvents | None = None
) -> TrainResult:
    """Fine-tune as ``config`` says; under ``torchrun`` every rank calls this (rank 0 writes files)."""
    from medclip_cli.runtime.devices import resolve_device

    check_config(config)
    device = resolve_device(config.device)
    info = dist_.init_distributed(device)
    device = dist_.local_device(device, info)
    try:
        return _Run(config, progress or NullProgress(), events or TrainEvents(), device, info).run()
    finally:
        dist_.shutdown_distributed()


class _StopFlag:
    """First Ctrl-C (or SIGTERM) asks the loop to checkpoint and stop; a second one aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _Scalars:
    """metrics.jsonl (always) and TensorBoard scalars (when tensorboard is installed), rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        if resume_step is not None and self.path.is_file():
            self._truncate_after(resume_step)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            self.writer = None

    def _truncate_after(self, step: int) -> None:
        # Lines written after the checkpoint belong to steps that will run again.
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
        write_text_atomic(self.path, "".join(k + "\n" for k in kept))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            prefix = "val" if record.get("type") == "epoch" else "train"
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.writer.add_scalar(f"{prefix}/{key}", value, record["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _write_json_atomic(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


class _Run:
    def __init__(self, cfg: TrainConfig, progress: ProgressReporter, events: TrainEvents, device, info) -> None:
        self.cfg, self.device, self.info = cfg, device, info
        self.progress = progress if info.is_main else NullProgress()
        self.events = events if info.is_main else TrainEvents()
        self.out = Path(cfg.output)
        self.precision = resolve_precision(cfg.precision, device)
        self.data_wait = 0.0  # seconds the last step waited for its batches
        self.ema: WeightAverage | None = None  # set in run() with --ema-decay

    # -- set-up --------------------------------------------------------------------------
    def _find_resume(self) -> ckpt.Checkpoint | None:
        cfg, out = self.cfg, self.out
        if cfg.resume:
            found = ckpt.find_checkpoint(out)
            if found is None:
                raise TrainingError(
                    f"{out}: nothing to resume (no checkpoint under {out / ckpt.CHECKPOINT_DIR})",
                    hint="start the run without --resume",
                )
            saved = out / "config.json"
            if saved.is_file():
                old = json.loads(saved.read_text(encoding="utf-8")).get("config", {})
                # Through JSON as config.json went: a tuple of the config compares equal to its list.
                new = json.loads(json.dumps(cfg.as_dict(), default=str))
                changed = _changed_setting(old, new)
                if changed is not None:
                    option, value, used = changed
                    raise UsageError(
                        f"--resume: {option} is {value!r} but the run in {out} used {used!r}",
                        hint="resume with the run's own settings (or start a new --output)",
                    )
            return ckpt.load_checkpoint(found)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise OutputError(
                f"{out}: already exists and is not empty",
                hint="pass --resume to continue that run, or choose another --output",
            )
        return None

    def _build_model(self, resume: ckpt.Checkpoint | None):
        from medclip_cli.models import resolve_model
        from medclip_cli.models.bundle import load_bundle

        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        if resume is not None:
            model = load_bundle(resume.path)
            model.manifest = dict(resume.state["manifest"])
            _own_tensors(model.module)
        else:
            model = resolve_model(
                cfg.model_dir, cfg.encoder, cfg.text_encoder, cfg.pretrained, cfg.text_pretrained, cfg.image_size
            )
        _lock(model.module, cfg)
        model = model.to(self.device)
        prefer_channels_last(model.module, self.device)
        return model

    def _load_data(self, model):
        from medclip_cli.data import load_dataset

        cfg = self.cfg
        options = cfg.dataset_options
        train_ds = load_dataset(cfg.data, cfg.split, cfg.dataset_format, **options)
        val_ds = load_dataset(cfg.data, cfg.val_split, cfg.dataset_format, **options) if cfg.val_split else None
        for task in cfg.val_tasks:
            val_ds.label_field(task)
        soft = dict(strict=cfg.strict, soft_label=cfg.soft_label, soft=cfg.soft_targets)
        for name in cfg.label_text_fields:
            train_ds.label_field(name)  # unknown field: usage error naming the known ones
        label_text = (list(cfg.label_text_fields), cfg.label_text_prompts) if cfg.label_text_prob > 0 else None
        train_set = load_pairs(train_ds, model, progress=self.progress, label_text=label_text, **soft)
        if len(train_set) == 0:
            raise TrainingError(
                f"{cfg.data}: the {cfg.split!r} split has no readable image with a caption",
                hint="check the images and the caption column with `medclip data check`",
            )
        val_set = None
        if val_ds is not None and self.info.is_main:
            val_set = load_pairs(val_ds, model, progress=self.progress, **soft)
            if len(val_set) == 0:
                raise TrainingError(
                    f"{cfg.data}: the {cfg.val_split!r} split has no readable image with a caption",
                    hint="pass --val-split none",
                )
        return train_ds, train_set, val_ds, val_set

    def _plan(self, model, n_train: int, n_val: int, skipped: int, lr: float, resume) -> TrainPlan:
        cfg, world = self.cfg, self.info.world_size
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
            device=str(self.device),
            precision=self.precision,
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

    def _default_lr(self, model) -> float:
        if self.cfg.lr is not None:
            return self.cfg.lr
        pretrained = (
            self.cfg.model_dir is not None or model.manifest.get("pretrained") or model.manifest.get("text_pretrained")
        )
        return PRETRAINED_LR if pretrained else SCRATCH_LR

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg, info = self.cfg, self.info
        resume = self._find_resume()
        dist_.barrier()  # every rank has checked the output folder before rank 0 writes to it
        model = self._build_model(resume)
        train_ds, train_set, val_ds, val_set = self._load_data(model)
        self.fingerprint = train_ds.fingerprint()
        if resume is not None and resume.state.get("data_fingerprint") != self.fingerprint:
            raise TrainingError(
                f"{cfg.data}: the {cfg.split!r} split changed since the checkpoint was written",
                hint="resume with the same data, or start a new run",
            )
        lr = self._default_lr(model)
        if cfg.text_feature_cache:
            train_set.add_text_cache(model.module, 2 * cfg.batch_size)
        plan = self._plan(model, len(train_set), len(val_set) if val_set else 0, train_set.skipped, lr, resume)
        self.model, self.plan, self.train_set, self.val_set, self.val_ds = model, plan, train_set, val_set, val_ds

        module = model.module
        self.optimizer = build_optimizer(module, lr, cfg.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, plan.total_steps, plan.warmup_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.ema = WeightAverage(module, cfg.ema_decay) if cfg.ema_decay else None
        self._prepare_finite_guard()
        self.step, self.epoch, self.position = 0, 0, 0
        self.best: dict | None = None
        self.history: list[dict] = []
        self.epoch_loss = [0.0, 0]
        self.last_checkpoint: Path | None = None
        if resume is not None:
            self._restore(resume)
        if info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            _write_json_atomic(self.out / "config.json", {"config": cfg.as_dict(), "plan": asdict(plan)})
        self.events.on_plan(plan, cfg)
        self.scalars = _Scalars(self.out, info.is_main, self.step if resume else None)
        # SigLIP models train with their own sigmoid loss (training/sigmoid_loss.py), CLIPs with the weighted one.
        self.loss_fn = make_loss(model, cfg.loss_weight, cfg.soft_targets, info.rank, info.world_size)
        step_module: nn.Module = ClipStep(module)
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            step_module = DistributedDataParallel(
                step_module, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if cfg.compile:
            compile_blocks(module)
        self.step_module = step_module
        _train_mode(module, cfg)  # a loaded bundle comes in eval mode (dropout, batch norm)
        try:
            with _StopFlag() as stop:
                self._loop(stop)
        finally:
            self.scalars.close()
        return TrainResult(
            output=self.out,
            last=self.out / "last",
            best=self.out / "best" if self.best else None,
            steps=self.step,
            epochs_done=self.epoch,
            best_metric=cfg.select_metric if self.best else None,
            best_value=self.best["value"] if self.best else None,
            best_epoch=self.best["epoch"] if self.best else None,
            history=self.history,
        )

    def _restore(self, resume: ckpt.Checkpoint) -> None:
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
        self.best = state.get("best")
        self.history = list(state.get("history", []))
        self.epoch_loss = list(state.get("epoch_loss", [0.0, 0]))
        self.last_checkpoint = resume.path

    def _loop(self, stop: _StopFlag) -> None:
        cfg, plan = self.cfg, self.plan

        def steps_in(epoch: int) -> int:
            return min(plan.steps_per_epoch, plan.total_steps - epoch * plan.steps_per_epoch)

        segments, epoch, position = [], self.epoch, self.position
        while epoch * plan.steps_per_epoch < plan.total_steps:
            segments.append((epoch, position * cfg.grad_accum, (steps_in(epoch) - position) * cfg.grad_accum))
            epoch, position = epoch + 1, 0
        batches = Batches(self.train_set, cfg, self.device, self.info, segments)
        with closing(iter(batches)) as batch_iter:
            while self.step < plan.total_steps:
                self._epoch(batch_iter, steps_in(self.epoch), stop)
                self._end_epoch()

    def _epoch(self, batch_iter, steps_this_epoch: int, stop: _StopFlag) -> None:
        cfg, plan = self.cfg, self.plan
        task = self.progress.task(f"epoch {self.epoch + 1}/{plan.epochs}", total=steps_this_epoch)
        if self.position:
            self.progress.advance(task, self.position)
        window = {"loss": 0.0, "steps": 0, "seconds": 0.0, "data": 0.0}
        last_end = time.perf_counter()
        # On a GPU the loss is read back once per log line, not every step (see ``_step``).
        each_step = self.device.type != "cuda"
        self.shown_loss: float | None = None
        while self.position < steps_this_epoch:
            loss = self._step(batch_iter)
            window["loss"] = window["loss"] + loss
            window["steps"] += 1
            window["data"] += self.data_wait
            self.epoch_loss[0] = self.epoch_loss[0] + loss
            self.epoch_loss[1] += 1
            if each_step:
                self.shown_loss = float(loss)
            log = window["steps"] == cfg.log_every or self.position == steps_this_epoch
            if log:  # the window's loss, read before the clock stops: its steps have all run then
                self.shown_loss = self._window_loss(window)
            # Step to step, waiting for data included (open_clip_train's "Batch (t)"). On a
            # GPU the host runs ahead of the device; over a log window the two agree.
            now = time.perf_counter()
            seconds, last_end = now - last_end, now
            window["seconds"] += seconds
            if log:
                self._log_window(window)
                window = {"loss": 0.0, "steps": 0, "seconds": 0.0, "data": 0.0}
            samples_s = round(plan.effective_batch / seconds, 1)
            shown = {"loss": self.shown_loss} if self.shown_loss is not None else {}
            self.progress.advance(task, **shown, lr=self._lr(), samples_s=samples_s)
            if dist_.any_rank(stop.requested, self.device):
                path = self._checkpoint()
                raise TrainingInterrupted(self.step, path)
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.position < steps_this_epoch:
                self._checkpoint()
                last_end = time.perf_counter()  # a checkpoint is not training time
        self.progress.done(task)

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _step(self, batch_iter) -> torch.Tensor:
        """One optimizer step; returns its loss as a 0-dim tensor on the device, not yet read.

        Nothing in the step waits for the device (no ``.item()``, no copy back): the host queues
        the next step's kernels while the device still runs this one. A non-finite loss is caught
        on the device where the fused AdamW can skip the update by itself (:meth:`_guard_finite`).
        """
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
                with autocast(self.precision, self.device), self._linear_kernels():
                    image_f, text_f, scale = self.step_module(images, tokens, lengths)
                loss = self.loss_fn(image_f, text_f, scale, groups)
                self.scaler.scale(loss / cfg.grad_accum).backward()
            total = loss.detach() if total is None else total + loss.detach()
        total = dist_.all_mean_tensor(total / cfg.grad_accum)
        self._guard_finite(total)
        if cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], cfg.grad_clip)
        self.scaler.step(self.optimizer)
        if self.defer_finite:
            del self.optimizer.found_inf
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

    def _linear_kernels(self):
        # Compiled blocks choose their own kernels; a mode would only get in the way of tracing.
        return nullcontext() if self.cfg.compile else cpu_linear(self.device, self.precision)

    def _prepare_finite_guard(self) -> None:
        self.defer_finite = (
            self.device.type == "cuda" and not self.scaler.is_enabled() and bool(self.optimizer.defaults.get("fused"))
        )
        self.first_bad = torch.zeros((), dtype=torch.long, device=self.device)
        self.first_bad_value = torch.zeros((), dtype=torch.float32, device=self.device)

    def _guard_finite(self, loss: torch.Tensor) -> None:
        """Never apply the update of a non-finite loss.

        On the CPU (or without a fused optimizer) the loss is read now and the run stops before
        the update. On a GPU reading it would stall the pipeline every step, so the fused AdamW
        gets ``found_inf`` (as ``GradScaler`` gives it) and skips the update on the device, the
        first bad step is noted there, and :meth:`_check_finite` reads it at the next log line,
        epoch end or checkpoint, stopping the run before anything is written.
        """
        if not self.defer_finite:
            value = float(loss)
            if not math.isfinite(value):
                self._raise_non_finite(value, self.step + 1)
            return
        bad = ~torch.isfinite(loss)
        self.optimizer.found_inf = bad.float()
        self.first_bad = torch.where((self.first_bad == 0) & bad, self.step + 1, self.first_bad)
        self.first_bad_value = torch.where(self.first_bad == self.step + 1, loss.float(), self.first_bad_value)

    def _check_finite(self) -> None:
        if self.defer_finite and int(self.first_bad):
            self._raise_non_finite(float(self.first_bad_value), int(self.first_bad), skipped=True)

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

    def _window_loss(self, window: dict) -> float:
        """The window's mean loss (reading the device once), stored in it for its record."""
        self._check_finite()
        window["mean_loss"] = float(window["loss"]) / window["steps"]
        return window["mean_loss"]

    def _log_window(self, window: dict) -> None:
        record = {
            "type": "train",
            "step": self.step,
            "epoch": self.epoch + 1,
            "loss": window["mean_loss"],
            "lr": self._lr(),
            "logit_scale": self.model.logit_scale,
            "samples_per_s": self.plan.effective_batch * window["steps"] / max(window["seconds"], 1e-9),
            # Seconds per step spent waiting for the next batch (open_clip_train's "Data (t)").
            "data_wait_s": window["data"] / window["steps"],
        }
        self.scalars.write(record)

    def _end_epoch(self) -> None:
        self._check_finite()
        record = {
            "type": "epoch",
            "step": self.step,
            "epoch": self.epoch + 1,
            "train_loss": float(self.epoch_loss[0]) / max(1, self.epoch_loss[1]),
        }
        # Validation and bundles see the weight average when the run keeps one.
        with self.ema.applied() if self.ema is not None else nullcontext():
            self._validate_and_save(record)
        dist_.barrier()
        self.epoch += 1
        self.position = 0
        self.epoch_loss = [0.0, 0]
        self._checkpoint()

    def _validate_and_save(self, record: dict) -> bool:
        cfg = self.cfg
        improved = False
        if self.info.is_main:
            if self.val_set is not None:
                batch = cfg.batch_size * self.info.world_size
                record.update(validate(self.model, self.val_set, self.val_ds, cfg, self.device, self.precision, batch))
                value = record[cfg.select_metric]
                better = (lambda a, b: a < b) if lower_is_better(cfg.select_metric) else (lambda a, b: a > b)
                if math.isfinite(value) and (self.best is None or better(value, self.best["value"])):
                    self.best = {"value": value, "epoch": self.epoch + 1, "step": self.step}
                    improved = True
                record["best"] = improved
            self.history.append(record)
            self.scalars.write(record)
            self.events.on_validation(record)
            self._save_bundle("last", record)
            if improved:
                self._save_bundle("best", record)
        return improved

    def _provenance(self, record: dict) -> dict:
        cfg = self.cfg
        return {
            "source": "medclip finetune",
            "run": str(self.out),
            "data": str(cfg.data),
            "split": cfg.split,
            "data_fingerprint": self.fingerprint,
            "epoch": record["epoch"],
            "step": record["step"],
            "loss_weight": cfg.loss_weight,
            "metrics": {k: v for k, v in record.items() if isinstance(v, float)},
        }

    def _save_bundle(self, name: str, record: dict) -> None:
        from medclip_cli.models.bundle import save_bundle

        save_bundle(self.model, self.out / name, self._provenance(record))

    def _checkpoint(self) -> Path:
        self._check_finite()
        path = self.out / ckpt.CHECKPOINT_DIR / f"step-{self.step:08d}"
        if self.info.is_main:
            state = {
                "step": self.step,
                "epoch": self.epoch,
                "position": self.position,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "rng": ckpt.rng_state(self.device),
                "best": self.best,
                "history": self.history,
                "epoch_loss": [float(self.epoch_loss[0]), self.epoch_loss[1]],
                "world_size": self.info.world_size,
                "data_fingerprint": self.fingerprint,
                "manifest": self.model.manifest,
            }
            path = ckpt.save_checkpoint(self.out, self.model, state, self.step)
        dist_.barrier()
        self.last_checkpoint = path
        return path
