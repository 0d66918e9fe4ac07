"""The settings of a fine-tuning run: :class:`TrainConfig`, its checks, the metrics a run can
select on, its precision, and resume's comparison of a saved run's settings with new ones.

``config.json`` of a run holds its :class:`TrainConfig`; this module is the one that reads it back.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Collection, Sequence

from medclip_cli.errors import UsageError
from medclip_cli.flags import flag
from medclip_cli.training.loss import check_loss_weight

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PRETRAINED_LR = 1e-5
SCRATCH_LR = 5e-4
# Settings that may differ when a run is resumed: they do not change what is computed.
# ``output`` is one of them: a run folder is identified by itself, not by how it was spelled.
RESUME_FREE = ("device", "workers", "checkpoint_every", "log_every", "resume", "strict", "output", "cache")
_PATH_SETTINGS = ("data", "model_dir")


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
    # A multi-label field ("findings": the --finding-columns of a manifest) scored each epoch with
    # prompt pairs: findings_macro_auroc/auprc and each finding's AUROC (training/findings_validation.py).
    val_findings: str | None = None
    findings_uncertain: str = "ignore"  # uncertain (-1) labels at validation: ignore, positive, negative
    findings_prompts: str | None = None  # prompt set whose [pairs] word the findings; None: the seed's
    select_metric: str = "val_loss"  # picks best/ ; lower_is_better says which way
    strict: bool = False  # an unreadable image stops the run instead of being skipped
    # Train straight from WebDataset tar shards (``data/shard_stream.py``): nothing unpacked or
    # decoded into the cache; samples shuffled within a buffer of ``shuffle_buffer`` per loader
    # worker; an epoch is ``samples_per_epoch`` samples (None: the shards' sizes.json or count).
    stream: bool = False
    shuffle_buffer: int = 1000
    samples_per_epoch: int | None = None
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
    cache: bool = True  # decoded pixels and caption tokens from (and to) MEDCLIP_HOME/cache; the same values either way
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


def metric_names(val_tasks: Sequence[str], val_findings: str | None = None) -> list[str]:
    """The validation metrics a run can select ``best/`` on."""
    from medclip_cli.training.findings_validation import FINDINGS_METRICS

    names = ["val_loss"]
    for k in (1, 5, 10):
        names += [f"image_to_text_R@{k}", f"text_to_image_R@{k}"]
    names += ["image_to_text_median_rank", "text_to_image_median_rank"]
    return names + [f"zeroshot_{t}_acc" for t in val_tasks] + (list(FINDINGS_METRICS) if val_findings else [])


def check_config(cfg: TrainConfig) -> None:
    """Usage errors before anything is loaded."""
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or not 0 <= cfg.seed < 2**32:
        raise UsageError(f"--seed must be a whole number from 0 to {2**32 - 1:,}, not {cfg.seed}")
    check_loss_weight(cfg.loss_weight)
    for name in ("batch_size", "epochs", "grad_accum", "log_every"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or value <= 0:
            raise UsageError(f"{flag(name)} must be a positive whole number, not {value}")
    if cfg.max_steps is not None and cfg.max_steps <= 0:
        raise UsageError(f"--max-steps must be positive, not {cfg.max_steps}")
    if cfg.lr is not None and not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise UsageError(f"--lr must be a positive number, not {cfg.lr}")
    if not (cfg.weight_decay >= 0 and math.isfinite(cfg.weight_decay)):
        raise UsageError(f"{flag('weight_decay')} must be zero or positive, not {cfg.weight_decay}")
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
        raise UsageError(f"--label-text-prob needs {flag('label_text_fields')} (the label fields to name)")
    if cfg.lock_image_unlocked and not cfg.lock_image or cfg.lock_text_unlocked and not cfg.lock_text:
        raise UsageError("unlocked groups/layers only apply with --lock-image / --lock-text")
    if cfg.text_feature_cache and (not cfg.lock_text or cfg.lock_text_unlocked):
        raise UsageError("--text-feature-cache needs a wholly locked text tower (--lock-text, no unlocked layers)")
    if cfg.lock_image_unlocked < 0 or cfg.lock_text_unlocked < 0:
        raise UsageError("the number of unlocked groups/layers must be zero or positive")
    if cfg.model_dir is not None and cfg.image_size is not None:
        raise UsageError(f"--image-size applies to --encoder; a {flag('model_dir')} bundle keeps its own input size")
    if not isinstance(cfg.dataset_options, dict):
        raise UsageError(f"data-set options must be a table of option names, not {cfg.dataset_options!r}")
    if cfg.val_split is None and cfg.val_tasks:
        raise UsageError(f"{flag('val_tasks')} needs a validation split (drop --val-split none)")
    if cfg.val_split is None and cfg.val_findings:
        raise UsageError(f"{flag('val_findings')} needs a validation split (drop --val-split none)")
    if cfg.val_findings:
        from medclip_cli.data.findings import uncertain_policy

        uncertain_policy(cfg.findings_uncertain)
    _check_stream(cfg)
    known = metric_names(cfg.val_tasks, cfg.val_findings)
    if cfg.select_metric not in known:
        hint = "validate findings with --finding-columns (or --val-findings FIELD)" if cfg.select_metric.startswith("findings_") else None
        raise UsageError(f"--select-metric {cfg.select_metric!r} is not computed (choose from: {', '.join(known)})", hint=hint)


def _check_stream(cfg: TrainConfig) -> None:
    if not cfg.stream:
        if cfg.samples_per_epoch is not None:
            raise UsageError("--samples-per-epoch applies to --stream (a cached split counts its own pairs)")
        return
    if isinstance(cfg.shuffle_buffer, bool) or not isinstance(cfg.shuffle_buffer, int) or cfg.shuffle_buffer < 1:
        raise UsageError(f"--shuffle-buffer must be a positive whole number, not {cfg.shuffle_buffer}")
    if cfg.samples_per_epoch is not None and cfg.samples_per_epoch < 1:
        raise UsageError(f"--samples-per-epoch must be a positive whole number, not {cfg.samples_per_epoch}")
    # Both need every text of the split before the first step; a stream sees each one when it comes.
    if cfg.label_text_prob > 0:
        raise UsageError("--label-text-prob does not work with --stream (label prompts need the whole split's labels)", hint="drop one of them")
    if cfg.text_feature_cache:
        raise UsageError("--text-feature-cache does not work with --stream (it embeds every text before the first step)", hint="drop one of them")


def resolve_precision(precision: str, device) -> str:
    """The precision a run uses on ``device`` (``auto``: bf16 or fp16 on a GPU, fp32 on the CPU)."""
    import torch

    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise UsageError("--precision fp16 needs a GPU; use bf16 or fp32 on the CPU")
    return precision


def _changed_setting(old: dict, new: dict) -> tuple[str, object, object] | None:
    """The first setting that differs from the resumed run's: (option, value now, value then)."""
    for key, value in new.items():
        if key in RESUME_FREE or key not in old:
            continue
        if key == "dataset_options" and isinstance(old[key], dict) and isinstance(value, dict):
            # Each data-set option is its own CLI option (--image-column ...): name the one that changed.
            for name in sorted({*value, *old[key]}):
                if value.get(name) != old[key].get(name):
                    return flag(name), value.get(name), old[key].get(name)
        elif key in _PATH_SETTINGS and _same_path(old[key], value):
            continue
        elif old[key] != value:
            return flag(key), value, old[key]
    return None


def _same_path(old: object, new: object) -> bool:
    """The same file, however it is spelled (relative, absolute, through a link)."""
    if old is None or new is None:
        return old is new
    try:
        return Path(old).resolve() == Path(new).resolve() or os.path.samefile(old, new)
    except (OSError, TypeError, ValueError):
        return False


def saved_config(cfg: TrainConfig) -> dict:
    """The settings as a run saves them: paths absolute, so another working directory (or a
    moved run folder) resumes the same data."""
    saved = cfg.as_dict()
    for key in _PATH_SETTINGS:
        if saved.get(key) is not None:
            saved[key] = str(Path(saved[key]).absolute())
    return saved


# --------------------------------------------------------------------------------------------
# Resume: the one place that reads a run's config.json back and compares it with new settings.

CONFIG_NAME = "config.json"


def saved_settings(output: Path) -> dict | None:
    """The settings of the run in ``output`` as its ``config.json`` holds them, else as its newest
    checkpoint holds them (None: neither)."""
    path = Path(output) / CONFIG_NAME
    if not path.is_file():
        return _checkpoint_settings(output)
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: also not UTF-8
        raise UsageError(f"{path}: cannot read the run's settings ({type(exc).__name__})") from exc
    if not isinstance(saved, dict) or not isinstance(saved.get("config", {}), dict):
        raise UsageError(f"{path}: cannot read the run's settings (no 'config' object)")
    return saved.get("config", {})


def _checkpoint_settings(output: Path) -> dict | None:
    from medclip_cli.training import checkpoint as ckpt

    found = ckpt.find_checkpoint(Path(output))
    if found is None:
        return None
    config = ckpt.load_checkpoint(found).state.get("config")
    return config if isinstance(config, dict) else None


def check_resume(cfg: TrainConfig, checkpoint_config: dict | None = None) -> None:
    """``--resume``: every setting that changes what is computed is the saved run's own (as
    config.json says, and as the checkpoint being loaded says)."""
    for old in (saved_settings(cfg.output), checkpoint_config):
        if isinstance(old, dict):
            _check_against(cfg, old)


def _check_against(cfg: TrainConfig, old: dict) -> None:
    # Through JSON as config.json went: a tuple of the config compares equal to its list.
    new = json.loads(json.dumps(cfg.as_dict(), default=str))
    changed = _changed_setting(old, new)
    if changed is not None:
        option, value, used = changed
        raise UsageError(
            f"--resume: {option} is {value!r} but the run in {cfg.output} used {used!r}",
            hint="resume with the run's own settings (or start a new --output)",
        )


# Settings resume never takes from the saved run: where it is, that it resumes, and the data-set
# options (laid over the saved ones, see resume_settings).
_NOT_TAKEN = ("output", "resume", "dataset_options")


def resume_settings(output: Path, settings: dict, given: Collection[str]) -> dict:
    """``--resume``: ``settings`` with every one not ``given`` (left at its default) taken from
    the run in ``output``, and the data-set options given now laid over the run's."""
    saved = saved_settings(output)
    if saved is None:
        return settings
    taken = dict(settings)
    for name in settings:
        if name in _NOT_TAKEN or name in given or name not in saved:
            continue
        value = saved[name]
        taken[name] = Path(value) if name in ("data", "model_dir") and value is not None else value
    if isinstance(saved.get("dataset_options"), dict):
        taken["dataset_options"] = {**saved["dataset_options"], **settings.get("dataset_options", {})}
    return taken
