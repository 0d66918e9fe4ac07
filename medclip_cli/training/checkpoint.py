"""Resumable checkpoints, written so that a crash at any instant leaves the last good one intact.

Layout under ``RUN/checkpoints/``::

    step-000120/            a model bundle (model.safetensors + open_clip_config.json ...)
        training_state.pt   optimizer, scheduler, grad scaler, RNG states, data position
    latest                  the name of the newest complete checkpoint folder

A checkpoint folder is assembled under a temporary name and renamed into place, then ``latest``
is replaced atomically; only then are older folders removed. ``training_state.pt`` holds only
tensors and plain containers and is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from medclip_cli import runlock
from medclip_cli.atomic import atomic_dir, write_text_atomic
from medclip_cli.errors import OutputError, TrainingError

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
STATE_NAME = "training_state.pt"


@dataclass
class Checkpoint:
    """A checkpoint found on disk: its folder and its training state."""

    path: Path
    state: dict


def _write_text_atomic(path: Path, text: str) -> None:
    write_text_atomic(path, text, fsync=True)


def save_checkpoint(run_dir: Path, model, state: dict, step: int, keep: int = 1) -> Path:
    """Write model + training ``state`` for ``step`` atomically; keep the newest ``keep`` checkpoints."""
    from medclip_cli.models.bundle import save_bundle

    root = Path(run_dir) / CHECKPOINT_DIR
    name = f"step-{step:08d}"
    target = root / name
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{root}: cannot write checkpoints here ({exc.strerror})") from exc
    try:
        # The same step saved again (e.g. Ctrl-C right after a periodic save) replaces the first.
        with atomic_dir(target) as tmp:
            bundle = save_bundle(model, tmp / "bundle", provenance={"checkpoint_step": step})
            for item in bundle.iterdir():
                os.replace(item, tmp / item.name)
            bundle.rmdir()
            torch.save(state, tmp / STATE_NAME)  # the folder as a whole appears atomically
        _write_text_atomic(root / LATEST, name + "\n")
    except OSError as exc:
        raise OutputError(
            f"{root}: writing the checkpoint failed ({exc.strerror or exc})",
            hint="the previous checkpoint is intact; free some space, then continue the run with --resume",
        ) from exc
    _prune(root, keep=keep, current=name)
    return target


def _prune(root: Path, keep: int, current: str) -> None:
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and (p / STATE_NAME).is_file())
    for old in done[:-keep] if keep > 0 else done:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".step-*.tmp-*"):  # left by a run killed while writing
        shutil.rmtree(stale, ignore_errors=True)


def find_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or None."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return None
    pointer = root / LATEST
    done = sorted(p for p in root.glob("step-*") if _inside(p, root) and (p / STATE_NAME).is_file())
    if pointer.is_file() and not pointer.is_symlink():
        try:
            name = pointer.read_text(encoding="utf-8").strip()
        except (OSError, ValueError):
            name = ""
        # Only one of this run's own step folders: never a path that leads outside the run.
        if re.fullmatch(r"step-\d{8}", name) and root / name in done:
            return root / name
    return done[-1] if done else None


def _inside(path: Path, root: Path) -> bool:
    """A real folder of ``root`` (not a link that leads elsewhere)."""
    return path.is_dir() and not path.is_symlink() and path.resolve().parent == root.resolve()


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint's training state (tensors and plain containers only)."""
    import pickle

    state_path = Path(path) / STATE_NAME
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # of a file refused anyway
            state = torch.load(state_path, map_location="cpu", weights_only=True)
    except (OSError, pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise TrainingError(
            f"{state_path}: cannot read the checkpoint ({type(exc).__name__}: {exc})",
            hint="delete that folder to resume from an older checkpoint, or start a new run",
        ) from exc
    if not isinstance(state, dict) or "step" not in state:
        raise TrainingError(f"{state_path}: not a medclip training checkpoint")
    return Checkpoint(Path(path), state)


def load_model_weights(module: torch.nn.Module, path: Path) -> None:
    """Copy the checkpoint's weights into ``module`` exactly."""
    from safetensors.torch import load_model

    from medclip_cli.models.bundle import WEIGHTS_NAME

    load_model(module, str(Path(path) / WEIGHTS_NAME), strict=True)


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# What a run writes before its first checkpoint (a run that failed there left only these).
_EARLY_FILES = ("config.json", "metrics.jsonl", "tensorboard", CHECKPOINT_DIR, runlock.LOCK_NAME)


def unfinished_leftovers(out: Path) -> list[Path] | None:
    """The files of a run in ``out`` that stopped before its first checkpoint, or None when ``out``
    holds anything else (a checkpoint, a bundle, a file medclip did not write)."""
    if not out.is_dir() or not (out / "config.json").is_file():
        return None
    items = list(out.iterdir())
    if any(p.name not in _EARLY_FILES for p in items) or find_checkpoint(out) is not None:
        return None
    return [p for p in items if p.name != runlock.LOCK_NAME]
