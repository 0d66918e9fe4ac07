"""Fine-tuning a CLIP model on image-caption pairs: :func:`train` runs a :class:`TrainConfig`.

This module is the run's loop: set-up (resume, model, data, plan), epochs of steps, logging,
validation, bundles and checkpoints. The parts it drives, each in its own module:

- :mod:`~medclip_cli.training.config`: the settings, their checks, resume's comparison;
- :mod:`~medclip_cli.training.trainer`: the optimizer step (:func:`build_trainer`);
- :mod:`~medclip_cli.training.towers`: the model built or reloaded, locked towers, modes;
- :mod:`~medclip_cli.training.guard`: non-finite losses, Ctrl-C;
- :mod:`~medclip_cli.training.runlog`: ``metrics.jsonl`` / TensorBoard, ``config.json``;
- :mod:`~medclip_cli.training.batches` (the data; ``stream_batches`` with ``--stream``), :mod:`~medclip_cli.training.validate`.

A checkpoint needs only (epoch, position) to continue exactly where the run stopped, since the
data order and every random choice of a batch are seeded by their place in the run.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from contextlib import closing, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

from medclip_cli import runlock
from medclip_cli.errors import OutputError, TrainingError
from medclip_cli.evaluation.metrics import lower_is_better
from medclip_cli.progress import NullProgress, ProgressReporter
from medclip_cli.training import checkpoint as ckpt
from medclip_cli.training import distributed as dist_
from medclip_cli.training.batches import Batches, load_pairs
from medclip_cli.training.config import TrainConfig, check_config, check_resume, resolve_precision, saved_config
from medclip_cli.training.guard import NonFiniteLoss, StepAbandoned, StopFlag, TrainingInterrupted
from medclip_cli.training.plan import TrainPlan, make_plan
from medclip_cli.training.runlog import Scalars, write_json_atomic
from medclip_cli.training.stream_batches import StreamBatches, open_stream
from medclip_cli.training.text_features import add_text_features
from medclip_cli.training.towers import build_model
from medclip_cli.training.trainer import build_trainer, default_lr
from medclip_cli.training.findings_validation import findings_labels
from medclip_cli.training.validate import validate

__all__ = [
    "NonFiniteLoss",
    "TrainConfig",
    "TrainEvents",
    "TrainPlan",
    "TrainResult",
    "TrainingInterrupted",
    "train",
]


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


def train(
    config: TrainConfig, progress: ProgressReporter | None = None, events: TrainEvents | None = None
) -> TrainResult:
    """Fine-tune as ``config`` says; under ``torchrun`` every rank calls this (rank 0 writes files)."""
    from medclip_cli.runtime.devices import resolve_device

    check_config(config)
    device = resolve_device(config.device)
    # The run folder belongs to this run until it ends (rank 0 holds it for every rank).
    lock = runlock.acquire(config.output) if os.environ.get("RANK", "0") == "0" else None
    try:
        info = dist_.init_distributed(device)
        device = dist_.local_device(device, info)
        try:
            return _Run(config, progress or NullProgress(), events or TrainEvents(), device, info).run()
        finally:
            dist_.shutdown_distributed()
    finally:
        if lock is not None:
            lock.release()


class _Run:
    """One run: set up in full by the constructor (resumed when ``cfg.resume``), then :meth:`run`."""

    def __init__(self, cfg: TrainConfig, progress: ProgressReporter, events: TrainEvents, device, info) -> None:
        self.cfg, self.device, self.info = cfg, device, info
        self.progress = progress if info.is_main else NullProgress()
        self.events = events if info.is_main else TrainEvents()
        self.out = Path(cfg.output)
        precision = resolve_precision(cfg.precision, device)
        resume = self._find_resume()
        dist_.barrier()  # every rank has checked the output folder before rank 0 writes to it
        model = build_model(cfg, device, resume, self.progress)
        train_ds, self.train_set, self.val_ds, self.val_set = self._load_data(model)
        self.fingerprint = train_ds.fingerprint()
        if resume is not None and resume.state.get("data_fingerprint") != self.fingerprint:
            raise TrainingError(
                f"{cfg.data}: the {cfg.split!r} split changed since the checkpoint was written",
                hint="resume with the same data, or start a new run",
            )
        lr = default_lr(cfg, model)
        if cfg.text_feature_cache:
            add_text_features(self.train_set, model.module, 2 * cfg.batch_size, self.progress, cfg.split)
        n_val = len(self.val_set) if self.val_set else 0
        self.plan = make_plan(
            cfg, model, device, precision, info.world_size, len(self.train_set), n_val, self.train_set.skipped, lr, resume
        )
        self.model = model
        self.trainer = build_trainer(cfg, self.plan.total_steps, device=device, info=info, model=model)
        self.best: dict | None = None
        self.resumed_stream = resume.state.get("stream") if resume is not None else None
        self.history: list[dict] = []
        self.epoch_loss = [0.0, 0]  # the epoch's summed loss and steps so far
        self.shown_loss: float | None = None
        self.stop = StopFlag(abandon=False)  # replaced by the run's own in run()
        self._saved_at: tuple[int, int, int] | None = None  # (step, epoch, position) of last_checkpoint
        if resume is not None:
            self.trainer.restore(resume)
            self.best = resume.state.get("best")
            self.history = list(resume.state.get("history", []))
            self.epoch_loss = list(resume.state.get("epoch_loss", [0.0, 0]))
        if info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.out / "config.json", {"config": saved_config(cfg), "plan": asdict(self.plan)})
        self.events.on_plan(self.plan, cfg)
        self.scalars = Scalars(self.out, info.is_main, self.trainer.step if resume else None)

    # -- set-up --------------------------------------------------------------------------
    def _find_resume(self) -> ckpt.Checkpoint | None:
        cfg, out = self.cfg, self.out
        if cfg.resume:
            found = ckpt.find_checkpoint(out)
            if found is None:
                before = " (it stopped before its first checkpoint)" if ckpt.unfinished_leftovers(out) else ""
                raise TrainingError(
                    f"{out}: nothing to resume{before}: no checkpoint under {out / ckpt.CHECKPOINT_DIR}",
                    hint="run the same command without --resume to start it again",
                )
            resume = ckpt.load_checkpoint(found)
            check_resume(cfg, resume.state.get("config"))
            return resume
        leftovers = ckpt.unfinished_leftovers(out)
        if leftovers is not None:  # a run that failed before its first checkpoint: start it again
            for item in leftovers:
                shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
        elif out.exists() and (not out.is_dir() or any(p.name != runlock.LOCK_NAME for p in out.iterdir())):
            raise OutputError(
                f"{out}: already exists and is not empty",
                hint="pass --resume to continue that run, or choose another --output",
            )
        return None

    def _load_data(self, model):
        from medclip_cli.data import load_dataset

        cfg = self.cfg
        options = cfg.dataset_options
        train_ds = open_stream(cfg, model) if cfg.stream else load_dataset(cfg.data, cfg.split, cfg.dataset_format, **options)
        val_ds = load_dataset(cfg.data, cfg.val_split, cfg.dataset_format, **options) if cfg.val_split else None
        for task in cfg.val_tasks:
            val_ds.label_field(task)
        for ds in (train_ds, val_ds):  # shard samples skipped while reading (data check lists them all)
            if getattr(ds, "format", None) == "webdataset" and ds.problems:
                self.progress.log(f"{ds.split}: skipped {len(ds.problems)} shard sample(s), e.g. {ds.problems[0]}")
        soft = dict(strict=cfg.strict, soft_label=cfg.soft_label, soft=cfg.soft_targets, cache=cfg.cache)
        for name in cfg.label_text_fields:
            train_ds.label_field(name)  # unknown field: usage error naming the known ones
        label_text = (list(cfg.label_text_fields), cfg.label_text_prompts) if cfg.label_text_prob > 0 else None
        train_set = train_ds if cfg.stream else load_pairs(train_ds, model, progress=self.progress, label_text=label_text, **soft)
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
            if cfg.val_findings:  # a missing field or a bad finding value fails before the first step
                findings_labels(val_set, val_ds, cfg.val_findings, cfg.findings_uncertain)
        return train_ds, train_set, val_ds, val_set

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> TrainResult:
        try:
            # One process abandons a step half-way on a stop request; several agree at step ends.
            with StopFlag(abandon=not self.info.enabled) as stop:
                self.stop = stop
                self._loop(stop)
        finally:
            self.scalars.close()
        t = self.trainer
        return TrainResult(
            output=self.out,
            last=self.out / "last",
            best=self.out / "best" if self.best else None,
            steps=t.step,
            epochs_done=t.epoch,
            best_metric=self.cfg.select_metric if self.best else None,
            best_value=self.best["value"] if self.best else None,
            best_epoch=self.best["epoch"] if self.best else None,
            history=self.history,
        )

    def _loop(self, stop: StopFlag) -> None:
        cfg, plan, t = self.cfg, self.plan, self.trainer

        def steps_in(epoch: int) -> int:
            return min(plan.steps_per_epoch, plan.total_steps - epoch * plan.steps_per_epoch)

        # position == the epoch's steps: stopped after its last step, before its end (validation, bundles)
        if not (0 <= t.position <= max(0, steps_in(t.epoch)) and t.step <= t.epoch * plan.steps_per_epoch + t.position):
            raise TrainingError(  # a checkpoint of another plan would loop without a step
                f"{cfg.output}: the checkpoint (epoch {t.epoch + 1}, step {t.step}) does not fit this run's plan "
                f"of {plan.steps_per_epoch} steps per epoch",
                hint="resume with the run's own settings, or start a new --output",
            )
        segments, epoch, position = [], t.epoch, t.position
        while epoch * plan.steps_per_epoch < plan.total_steps:
            segments.append((epoch, position * cfg.grad_accum, (steps_in(epoch) - position) * cfg.grad_accum))
            epoch, position = epoch + 1, 0
        stream = (self.resumed_stream, self.progress) if cfg.stream else ()  # --stream: training/stream_batches.py
        batches = self.batches = (StreamBatches if cfg.stream else Batches)(self.train_set, cfg, self.device, self.info, segments, *stream)
        with closing(iter(batches)) as batch_iter:
            while t.step < plan.total_steps or t.position:
                before, ended = t.step, t.position == steps_in(t.epoch)
                try:
                    self._epoch(batch_iter, steps_in(t.epoch), stop)
                    if t.step == before and not ended:
                        raise TrainingError(f"{cfg.output}: an epoch ran no step; stopped", hint="start a new --output")
                    self._end_epoch()
                except StepAbandoned:  # a step or the validation stopped half-way: the last one done is kept
                    raise TrainingInterrupted(t.step, self._checkpoint()) from None
                if dist_.any_rank(stop.requested, self.device):  # Ctrl-C during validation or saving
                    raise TrainingInterrupted(t.step, t.last_checkpoint)

    def _epoch(self, batch_iter, steps_this_epoch: int, stop: StopFlag) -> None:
        cfg, plan, t = self.cfg, self.plan, self.trainer
        task = self.progress.task(f"epoch {t.epoch + 1}/{plan.epochs}", total=steps_this_epoch)
        if t.position:
            self.progress.advance(task, t.position)
        window = {"loss": 0.0, "steps": 0, "seconds": 0.0, "data": 0.0}
        last_end = time.perf_counter()
        # On a GPU the loss is read back once per log line, not every step (see ``Trainer.train_step``).
        each_step = self.device.type != "cuda"
        self.shown_loss = None
        while t.position < steps_this_epoch:
            loss = t.train_step(batch_iter, stop)
            window["loss"] = window["loss"] + loss
            window["steps"] += 1
            window["data"] += t.data_wait
            self.epoch_loss[0] = self.epoch_loss[0] + loss
            self.epoch_loss[1] += 1
            if each_step:
                self.shown_loss = float(loss)
            log = window["steps"] == cfg.log_every or t.position == steps_this_epoch
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
            self.progress.advance(task, **shown, lr=t.lr, samples_s=samples_s)
            if dist_.any_rank(stop.requested, self.device):
                path = self._checkpoint()
                raise TrainingInterrupted(t.step, path)
            if cfg.checkpoint_every and t.step % cfg.checkpoint_every == 0 and t.position < steps_this_epoch:
                self._checkpoint()
                last_end = time.perf_counter()  # a checkpoint is not training time
        self.progress.done(task)

    def _window_loss(self, window: dict) -> float:
        """The window's mean loss (reading the device once), stored in it for its record."""
        self.trainer.check_finite()
        window["mean_loss"] = float(window["loss"]) / window["steps"]
        return window["mean_loss"]

    def _log_window(self, window: dict) -> None:
        record = {
            "type": "train",
            "step": self.trainer.step,
            "epoch": self.trainer.epoch + 1,
            "loss": window["mean_loss"],
            "lr": self.trainer.lr,
            "logit_scale": self.model.logit_scale,
            "samples_per_s": self.plan.effective_batch * window["steps"] / max(window["seconds"], 1e-9),
            # Seconds per step spent waiting for the next batch (open_clip_train's "Data (t)").
            "data_wait_s": window["data"] / window["steps"],
        }
        self.scalars.write(record)

    def _end_epoch(self) -> None:
        t = self.trainer
        t.check_finite()
        record = {
            "type": "epoch",
            "step": t.step,
            "epoch": t.epoch + 1,
            "train_loss": float(self.epoch_loss[0]) / max(1, self.epoch_loss[1]),
        }
        # Validation and bundles see the weight average when the run keeps one.
        with t.ema.applied() if t.ema is not None else nullcontext():
            self._validate_and_save(record)
        dist_.barrier()
        t.epoch += 1
        t.position = 0
        self.epoch_loss = [0.0, 0]
        self._checkpoint()

    def _validate_and_save(self, record: dict) -> bool:
        cfg = self.cfg
        improved = False
        if self.info.is_main:
            if self.val_set is not None:
                batch = cfg.batch_size * self.info.world_size
                with self.stop.interruptible():  # nothing is written before it ends
                    scores = validate(self.model, self.val_set, self.val_ds, cfg, self.device, self.plan.precision, batch, self.progress)
                record.update(scores)
                value = record[cfg.select_metric]
                better = (lambda a, b: a < b) if lower_is_better(cfg.select_metric) else (lambda a, b: a > b)
                if math.isfinite(value) and (self.best is None or better(value, self.best["value"])):
                    self.best = {"value": value, "epoch": self.trainer.epoch + 1, "step": self.trainer.step}
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
        t = self.trainer
        t.check_finite()
        here = (t.step, t.epoch, t.position)
        if t.last_checkpoint is not None and self._saved_at == here and t.last_checkpoint.is_dir():
            return t.last_checkpoint  # a stop right after a periodic save: that one is this state
        path = self.out / ckpt.CHECKPOINT_DIR / f"step-{t.step:08d}"
        # The shards of the micro-batches that completed steps applied, on every rank: a collective.
        stream = self.batches.progress(t.epoch, t.position * self.cfg.grad_accum) if self.cfg.stream else None
        if self.info.is_main:
            state = {
                **t.state(),
                "best": self.best,
                "history": self.history,
                "epoch_loss": [float(self.epoch_loss[0]), self.epoch_loss[1]],
                "world_size": self.info.world_size,
                "data_fingerprint": self.fingerprint,
                "stream": stream,  # the epoch's shards done (training/stream_batches.py)
                "manifest": self.model.manifest,
                "config": saved_config(self.cfg),  # resume checks against it even without config.json
            }
            path = ckpt.save_checkpoint(self.out, self.model, state, t.step)
        dist_.barrier()
        t.last_checkpoint, self._saved_at = path, here
        return path
