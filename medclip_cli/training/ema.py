"""An exponential moving average of the trained weights (Polyak averaging, as timm's ``ModelEmaV3``).

``ema_decay`` d: after every optimizer step each averaged tensor moves ``1 - d`` of the way to the
live one, with d warmed up as ``min(d, (1 + n) / (10 + n))`` after n updates, so a short run is
not dominated by its random start. The average covers the trainable parameters and the running
statistics of normalisation layers (a ResNet's batch norm); locked weights never change and need
no copy. Validation and the run's bundles (``last/``, ``best/``) use the averaged weights; the
optimizer keeps training the live ones; checkpoints keep both.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _NormBase


class WeightAverage:
    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        for prefix, sub in module.named_modules():
            if isinstance(sub, _NormBase) and sub.track_running_stats:
                named += [(f"{prefix}.{n}" if prefix else n, b) for n, b in sub.named_buffers(recurse=False)
                          if b is not None and b.is_floating_point()]  # fmt: skip
        self.names = [n for n, _ in named]
        self.live = [t for _, t in named]
        with torch.no_grad():
            self.average = [t.detach().clone() for t in self.live]

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average (on the device, nothing read back)."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.average, [t.detach() for t in self.live], 1.0 - decay)

    @contextmanager
    @torch.no_grad()
    def applied(self):
        """The averaged weights in the model for the duration; the live ones back afterwards."""
        kept = [t.detach().clone() for t in self.live]
        for live, average in zip(self.live, self.average):
            live.copy_(average)
        try:
            yield
        finally:
            for live, saved in zip(self.live, kept):
                live.copy_(saved)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "tensors": dict(zip(self.names, self.average))}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        tensors = state["tensors"]
        if sorted(tensors) != sorted(self.names):
            raise ValueError("the checkpoint's weight average covers other weights than this model's trainable ones")
        for name, average in zip(self.names, self.average):
            average.copy_(tensors[name])
        self.updates = int(state["updates"])
