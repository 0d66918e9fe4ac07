"""What a run writes as it goes: ``metrics.jsonl`` and TensorBoard scalars, ``config.json``."""

from __future__ import annotations

import json
from pathlib import Path

from medclip_cli.atomic import write_text_atomic


class Scalars:
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


def write_json_atomic(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
