"""Training throughput of ``medclip finetune`` next to ``python -m open_clip_train.main``.

Same data (MedPix 2.0 train), model (``--encoder``: ViT-B-32 or RN50, random init), batch (32), image size (224),
precision (fp32), worker count and device (CPU). Each trainer runs a bounded number of steps;
samples/s is the samples over the summed step-to-step times after the first ``--skip`` steps
(open_clip_train's own "Batch (t)", and the same measure in medclip's metrics.jsonl): a mean, so a
loader that stalls every few steps counts (a median would hide it); ``--rounds``
alternates the trainers so that a busy machine slows both alike, and the best step is shown too.
medclip's one-time decode of the split is reported separately. Peak memory is the highest PSS
summed over each trainer's process tree (its data loader workers included), sampled every 0.5 s.

    python benchmarks/finetune_throughput.py --data ../shared/medpix2 --steps 8 --workers 2
    python benchmarks/finetune_throughput.py --encoder rn50 --steps 8 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import PeakTreeMemory  # noqa: E402

OPEN_CLIP_NAMES = {"vit-b-32": "ViT-B-32", "rn50": "RN50"}
STEP_LINE = re.compile(r"Train Epoch: \d+ \[.*?\].*?Batch \(t\): [0-9.]+, ([0-9.]+)/s,")


def write_open_clip_csv(data: Path, split: str, target: Path) -> int:
    """open_clip_train's CSV format: tab-separated ``filepath`` and ``title`` columns."""
    import pandas as pd

    from medclip_cli.data import load_dataset

    dataset = load_dataset(data, split)
    rows = [(str(s.image), s.caption) for s in dataset.samples if s.caption]
    pd.DataFrame(rows, columns=["filepath", "title"]).to_csv(target, sep="\t", index=False)
    return len(rows)


def run_open_clip_train(csv: Path, args, logs: Path) -> tuple[list[float], float]:
    """Per-step samples/s of open_clip_train, stopped after ``args.steps`` steps, and its peak MiB."""
    cmd = [
        sys.executable, "-m", "open_clip_train.main", "--train-data", str(csv), "--dataset-type", "csv",
        "--csv-img-key", "filepath", "--csv-caption-key", "title", "--model", OPEN_CLIP_NAMES[args.encoder],
        "--batch-size", str(args.batch_size), "--workers", str(args.workers), "--precision", getattr(args, "open_clip_precision", "fp32"),
        "--epochs", str(getattr(args, "open_clip_epochs", 1)), "--lr", "5e-4", "--warmup", "10", "--log-every-n-steps", "1", "--seed", "0",
        "--logs", str(logs), "--name", "bench", "--save-frequency", "0", "--report-to", "",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=logs)
    rates: list[float] = []
    memory = PeakTreeMemory(proc.pid, 0.5).__enter__()
    try:
        for line in proc.stdout:
            match = STEP_LINE.search(line)
            if match:
                rates.append(float(match.group(1)))
                print(f"  open_clip_train step {len(rates)}: {rates[-1]:.2f} samples/s", flush=True)
                if len(rates) >= args.steps:
                    break
    finally:
        memory.__exit__()
        proc.terminate()
        proc.wait(30)
    if len(rates) < args.steps:
        raise SystemExit(f"open_clip_train stopped after {len(rates)} steps (exit {proc.returncode})")
    return rates, memory.peak_mib


def run_medclip(args, output: Path) -> tuple[list[float], float, float]:
    """Per-step samples/s of medclip finetune, the seconds before its first step, and its peak MiB."""
    cmd = [
        sys.executable, "-m", "medclip_cli.cli", "finetune", "--encoder", args.encoder, "--pretrained", "none",
        "--data", str(args.data), "--output", str(output), "--batch-size", str(args.batch_size),
        "--workers", str(args.workers), "--precision", "fp32", "--image-size", "224", "--max-steps", str(args.steps),
        "--val-split", "none", "--log-every", "1", "--checkpoint-every", "0", "--device", "cpu", "--json",
        "--grad-clip", "0",  # open_clip_train clips nothing by default: the same work per step
    ]  # fmt: skip
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    with PeakTreeMemory(proc.pid, 0.5) as memory:
        _, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"medclip finetune failed: {stderr[-2000:]}")
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in records if r["type"] == "train"]
    total = time.monotonic() - started
    steps_time = sum(args.batch_size / r for r in rates)
    for k, r in enumerate(rates, 1):
        print(f"  medclip step {k}: {r:.2f} samples/s")
    return rates, total - steps_time, memory.peak_mib


def _load() -> str:
    # Other work on the machine slows a run down: the 1-minute load average says how busy it was.
    return f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"


def steady(rates: list[float], skip: int, batch: int) -> float:
    """Samples over seconds of the steps after the first ``skip``: every step counts, the ones
    that wait for data too (a median would hide a loader that stalls every few steps)."""
    times = [batch / r for r in rates[skip:]]
    return batch * len(times) / sum(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "medpix2")
    parser.add_argument("--encoder", choices=sorted(OPEN_CLIP_NAMES), default="vit-b-32")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--skip", type=int, default=2, help="first steps left out (warm-up)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="alternate the two trainers this many times")
    parser.add_argument("--only", choices=("both", "medclip", "open_clip"), default="both")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    import torch

    print(
        f"{args.encoder}: CPU threads: {torch.get_num_threads()}, batch {args.batch_size}, workers {args.workers}, "
        f"{args.steps} steps each, {args.rounds} round(s), first {args.skip} steps of each run left out"
    )
    rates: dict[str, list[float]] = {"medclip": [], "open_clip_train": []}
    peaks: dict[str, float] = {"medclip": 0.0, "open_clip_train": 0.0}
    with tempfile.TemporaryDirectory(prefix="medclip-bench-") as tmp:
        tmp = Path(tmp)
        n = write_open_clip_csv(args.data, "train", tmp / "train.csv")
        for round_ in range(args.rounds):
            if args.only in ("both", "medclip"):
                print(f"load average before medclip: {_load()}", flush=True)
                run_rates, setup, peak = run_medclip(args, tmp / f"medclip-run-{round_}")
                rates["medclip"] += run_rates[args.skip :]
                peaks["medclip"] = max(peaks["medclip"], peak)
                print(
                    f"medclip finetune round {round_ + 1}: {steady(run_rates, args.skip, args.batch_size):.2f} samples/s "
                    f"(start-up incl. decoding the split once: {setup:.1f} s; peak {peak:.0f} MiB)",
                    flush=True,
                )
            if args.only in ("both", "open_clip"):
                logs = tmp / f"logs-{round_}"
                logs.mkdir()
                print(f"load average before open_clip_train: {_load()}", flush=True)
                run_rates, peak = run_open_clip_train(tmp / "train.csv", args, logs)
                rates["open_clip_train"] += run_rates[args.skip :]
                peaks["open_clip_train"] = max(peaks["open_clip_train"], peak)
                print(
                    f"open_clip_train round {round_ + 1} ({n} pairs): "
                    f"{steady(run_rates, args.skip, args.batch_size):.2f} samples/s; peak {peak:.0f} MiB",
                    flush=True,
                )
    summary = {k: (steady(v, 0, args.batch_size), max(v)) for k, v in rates.items() if v}
    print(f"load average at the end: {_load()}")
    for name, (mean, best) in summary.items():
        print(f"{name}: {mean:.2f} samples/s, best step {best:.2f} samples/s, peak PSS {peaks[name]:.0f} MiB")
    if len(summary) == 2:
        (m_med, m_best), (o_med, o_best) = summary["medclip"], summary["open_clip_train"]
        print(f"ratio medclip / open_clip_train: {m_med / o_med:.2f}x (all steps), {m_best / o_best:.2f}x (best step)")
        print(f"peak memory medclip / open_clip_train: {peaks['medclip'] / peaks['open_clip_train']:.2f}")


if __name__ == "__main__":
    main()
