"""What stops a run: a non-finite loss (:class:`FiniteGuard`), Ctrl-C (:class:`StopFlag`)."""

from __future__ import annotations

import math
import signal
import threading
from pathlib import Path

import torch

from medclip_cli.errors import TrainingError


class NonFiniteLoss(TrainingError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(TrainingError):
    """Ctrl-C: a checkpoint was saved; the run can be resumed."""

    exit_code = 130

    def __init__(self, step: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted at step {step}; checkpoint saved in {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint


class FiniteGuard:
    """Never apply the update of a non-finite loss.

    On the CPU (or without a fused optimizer) the loss is read at once and the run stops before
    the update. On a GPU reading it would stall the pipeline every step, so the fused AdamW gets
    ``found_inf`` (as ``GradScaler`` gives it) and skips the update on the device, the first bad
    step is noted there, and :meth:`check` reads it at the next log line, epoch end or checkpoint,
    stopping the run before anything is written.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scaler, device: torch.device) -> None:
        self.optimizer = optimizer
        self.deferred = device.type == "cuda" and not scaler.is_enabled() and bool(optimizer.defaults.get("fused"))
        self.first_bad = torch.zeros((), dtype=torch.long, device=device)
        self.first_bad_value = torch.zeros((), dtype=torch.float32, device=device)

    def guard(self, loss: torch.Tensor, step: int) -> float | None:
        """Before optimizer step ``step`` (1-based): the loss's value when it is non-finite and
        read now (the caller stops), else None (finite, or noted on the device)."""
        if not self.deferred:
            value = float(loss)
            return None if math.isfinite(value) else value
        bad = ~torch.isfinite(loss)
        self.optimizer.found_inf = bad.float()
        self.first_bad = torch.where((self.first_bad == 0) & bad, step, self.first_bad)
        self.first_bad_value = torch.where(self.first_bad == step, loss.float(), self.first_bad_value)
        return None

    def after_step(self) -> None:
        if self.deferred:
            del self.optimizer.found_inf

    def first_skipped(self) -> tuple[float, int] | None:
        """(loss, step) of the first update skipped on the device, reading it back; None if none."""
        if self.deferred and int(self.first_bad):
            return float(self.first_bad_value), int(self.first_bad)
        return None


class StepAbandoned(BaseException):
    """Raised by :class:`StopFlag` inside an interruptible part: its work is dropped, nothing of
    it was committed. A ``BaseException``, so that no ``except Exception`` on the way swallows it."""


class StopFlag:
    """First Ctrl-C (or SIGTERM) asks the run to checkpoint and stop; a second one aborts at once.

    A step is an interruptible compute part (batches, forward, backward) and a short commit part
    (optimizer, schedule, weight average, counters). Inside :meth:`interruptible` a stop request
    raises :class:`StepAbandoned` at once: the loop drops the half-done work and checkpoints the
    last completed step, so ``--resume`` replays the abandoned batch and ends with the weights an
    uninterrupted run has. Elsewhere (commit parts, checkpoints, bundles) the request is only
    noted and honoured at the next boundary. ``abandon=False`` (several processes: ranks must
    agree on where to stop, a rank leaving a collective alone would hang the others) always defers.
    """

    def __init__(self, abandon: bool = True) -> None:
        self.requested = False
        self.abandon = abandon
        self._armed = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self._armed:
            self._armed = False
            raise StepAbandoned

    def interruptible(self) -> "_Interruptible":
        """A block that a stop request abandons at once (raising :class:`StepAbandoned`)."""
        return _Interruptible(self)

    def __exit__(self, *exc) -> None:
        self._armed = False
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _Interruptible:
    def __init__(self, flag: StopFlag) -> None:
        self.flag = flag

    def __enter__(self) -> None:
        flag = self.flag
        flag._armed = flag.abandon  # armed first: a request arriving now raises or is seen below
        if flag.requested and flag._armed:
            flag._armed = False
            raise StepAbandoned

    def __exit__(self, *exc) -> bool:
        self.flag._armed = False
        return False
