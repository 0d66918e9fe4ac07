"""One prepared GPU run (H100/H200, under 10 minutes): bf16 fine-tuning of ViT-B/32 on MedPix train.

Measured in one process, one after the other, each after its own warm-up:
1. an audit of the engine step: operations that read the device back (``torch.cuda`` sync debug
   mode; the step should have none) and a ``torch.profiler`` table of a few steps (host vs device
   time, the top kernels) written to ``--profile``;
2. the ceiling: the engine's own training step (``step_ceiling.make_step_run``) on pinned,
   in-memory batches, steps queued back to back; with ``--compile`` also the step with the
   towers' blocks compiled (``compile_blocks``, what ``medclip finetune --compile`` does);
3. the model FLOPs of one engine step (``torch.utils.flop_counter.FlopCounterMode``, forward and
   backward) -> model FLOP utilisation = FLOPs/step x steps/s / ``--peak-tflops``;
4. ``medclip finetune`` end to end (decode cache, pinned memory, non-blocking copies, fused
   AdamW, SDPA attention through ``nn.MultiheadAttention``; NHWC for convolutional towers), with
   ``--compile`` when the compiled ceiling was faster;
5. ``python -m open_clip_train.main`` with its default data pipeline (CSV, PIL decode and
   resize in ``--open-clip-workers`` processes) at ``amp_bf16``, same model, batch and image size.
Samples/s after ``--skip`` warm-up steps: the ceiling from device-synchronised chunks of steps,
``medclip finetune`` from its log windows (samples over step-to-step seconds, epoch ends left
out), open_clip_train from its own per-step "Batch (t)" (median). Targets: end to end >= 90 % of
the ceiling, >= 3x open_clip_train. Prints a table last; ``--json`` writes the figures.

    python benchmarks/gpu_finetune.py --data ../shared/medpix2 --compile --json $OUT/gpu_finetune.json
    python benchmarks/gpu_finetune.py --encoder test-vit --device cpu --precision fp32 --batch-size 8 \
        --steps 3 --skip 1 --no-open-clip          # a quick check of the script without a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from finetune_throughput import OPEN_CLIP_NAMES, run_open_clip_train, steady, write_open_clip_csv  # noqa: E402
from step_ceiling import captions_for, cycle, device_reads, make_step_run, memory_batches, time_steps  # noqa: E402


def step_flops(run, batches) -> int:
    """Model FLOPs of one engine step (forward + backward), counted by PyTorch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        run.train_step(iter(batches))
    return counter.get_total_flops()


def audit(args, captions: list[str], profile: Path | None) -> dict:
    """Device read-backs inside the step, and where a few steps' time goes (host and device)."""
    import torch

    run = make_step_run(args.encoder, batch_size=args.batch_size, device=args.device, precision=args.precision)
    it = cycle(memory_batches(run, captions))
    for _ in range(3):
        run.train_step(it)
    out: dict = {}
    if args.device.startswith("cuda"):
        out["syncs"] = device_reads(run, it, 2)
        print(f"device read-backs in 2 steps: {len(out['syncs'])} site(s)", flush=True)
        for line in out["syncs"]:
            print(f"  {line}", flush=True)
    from torch.profiler import ProfilerActivity, profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    sync()
    started = time.perf_counter()
    with torch_profile(activities=activities) as prof:
        for _ in range(5):
            run.train_step(it)
        sync()
    wall = (time.perf_counter() - started) / 5
    events = prof.key_averages()
    device_us = sum(getattr(e, "self_device_time_total", 0) or 0 for e in events) / 5
    out["profile_step_wall_ms"] = 1e3 * wall
    out["profile_device_busy_ms"] = device_us / 1e3
    sort = "self_cuda_time_total" if args.device.startswith("cuda") else "self_cpu_time_total"
    table = events.table(sort_by=sort, row_limit=30)
    print(f"profiled step: {1e3 * wall:.1f} ms wall, device busy {device_us / 1e3:.1f} ms "
          f"({100 * device_us / 1e6 / max(wall, 1e-9):.0f} %)", flush=True)
    if profile is not None:
        profile.parent.mkdir(parents=True, exist_ok=True)
        profile.write_text(table + "\n")
    del run, prof
    return out


def ceiling(args, captions: list[str], compile_: bool = False) -> tuple[float, int | None]:
    import torch

    from medclip_cli.runtime.kernels import compile_blocks

    run = make_step_run(args.encoder, batch_size=args.batch_size, device=args.device, precision=args.precision)
    batches = memory_batches(run, captions)
    flops = step_flops(run, batches) if not compile_ else None
    if compile_:
        compile_blocks(run.model.module)
    # Compiled: more warm-up, as each new text length bucket shape compiles once.
    times = time_steps(run, batches, args.steps, args.skip * (3 if compile_ else 1))
    del run
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return args.batch_size / statistics.median(times), flops


def end_to_end(args, output: Path, compile_: bool = False) -> tuple[float, float]:
    """``medclip finetune`` as a user runs it: samples/s over its log windows after warm-up (the
    loss is read back once a window, as in any run), and its wall time. With ``--stacks`` it runs
    under ``stack_sampler.py``, which writes where each of its threads spent the run."""
    sampler = [str(HERE / "stack_sampler.py"), "--out", str(args.stacks)] if args.stacks else []
    cmd = [
        sys.executable, *sampler, "-m", "medclip_cli.cli", "finetune", "--encoder", args.encoder, "--pretrained", "none",
        "--data", str(args.data), "--output", str(output), "--batch-size", str(args.batch_size),
        "--workers", str(args.workers), "--precision", args.precision, "--max-steps", str(args.steps + args.skip),
        "--epochs", "1000", "--val-split", "none", "--log-every", str(args.log_every), "--checkpoint-every", "0",
        "--device", args.device, "--json", "--grad-clip", "0", "--compile" if compile_ else "--no-compile",
    ]  # fmt: skip
    started = time.monotonic()
    # Keep what PYTHONPATH already holds: on the GPU machine the carried wheels live there.
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path})
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"medclip finetune failed: {result.stderr[-3000:]}")
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    windows = [r for r in records if r["type"] == "train"]
    for r in windows:
        print(f"  medclip window to step {r['step']}: {r['samples_per_s']:.1f} samples/s, "
              f"waiting for data {1000 * r.get('data_wait_s', float('nan')):.1f} ms/step", flush=True)
    return window_rate(windows, args.skip, args.batch_size), wall


def window_rate(windows: list[dict], skip: int, batch: int) -> float:
    """Samples over seconds of the log windows that end after the first ``skip`` steps."""
    samples = seconds = 0.0
    previous = 0
    for record in windows:
        steps = record["step"] - previous
        previous = record["step"]
        if record["step"] > skip:
            samples += steps * batch
            seconds += steps * batch / record["samples_per_s"]
    if not seconds:
        raise SystemExit(f"no log window after the {skip} warm-up steps: raise --steps")
    return samples / seconds


def open_clip_side(args, tmp: Path) -> float:
    csv = tmp / "train.csv"
    write_open_clip_csv(args.data, "train", csv)
    logs = tmp / "open_clip_logs"
    logs.mkdir()
    oc_args = argparse.Namespace(
        encoder=args.encoder, batch_size=args.batch_size, workers=args.open_clip_workers, steps=args.steps + args.skip,
        open_clip_precision="amp_bf16" if args.precision == "bf16" else args.precision, open_clip_epochs=1000,
    )
    rates, _ = run_open_clip_train(csv, oc_args, logs)
    return steady(rates, args.skip, args.batch_size)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "medpix2")
    parser.add_argument("--encoder", default="vit-b-32")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40, help="timed steps of each measurement")
    parser.add_argument("--skip", type=int, default=10, help="warm-up steps left out")
    parser.add_argument("--workers", type=int, default=4, help="medclip's batch threads")
    parser.add_argument("--open-clip-workers", type=int, default=8, help="open_clip_train's loader processes")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100/H200 SXM: 989)")
    parser.add_argument("--compile", action="store_true", help="also time the step with compiled blocks")
    parser.add_argument("--log-every", type=int, default=5, help="medclip's steps per log window")
    parser.add_argument("--profile", type=Path, default=None, help="write the profiler table here")
    parser.add_argument("--no-audit", action="store_true")
    parser.add_argument("--no-open-clip", action="store_true")
    parser.add_argument("--no-end-to-end", action="store_true")
    parser.add_argument("--stacks", type=Path, default=None, help="sample the end-to-end run's stacks into this file")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not args.no_open_clip and args.encoder not in OPEN_CLIP_NAMES:
        raise SystemExit(f"--encoder {args.encoder}: no open_clip_train counterpart; pass --no-open-clip")
    import torch

    torch.manual_seed(0)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        name = torch.cuda.get_device_name()
    else:
        name = f"{platform.processor() or platform.machine()} ({os.cpu_count()} CPUs)"
    print(f"device {name}; torch {torch.__version__}; {args.encoder}, batch {args.batch_size}, {args.precision}; "
          f"{args.steps} timed steps after {args.skip}", flush=True)
    captions = captions_for(args.data, "train", 4 * args.batch_size)
    out: dict = {"device": name, "torch": torch.__version__, "args": {k: str(v) for k, v in vars(args).items()}}

    if not args.no_audit:
        out.update(audit(args, captions, args.profile))
    out["ceiling"], flops = ceiling(args, captions)
    out["step_flops"] = flops
    out["mfu_ceiling"] = flops * out["ceiling"] / args.batch_size / (args.peak_tflops * 1e12)
    print(f"in-memory step: {out['ceiling']:.1f} samples/s; {flops / 1e12:.3f} TFLOP/step; "
          f"MFU {100 * out['mfu_ceiling']:.1f}%", flush=True)
    if args.compile:
        try:
            out["ceiling_compiled"], _ = ceiling(args, captions, compile_=True)
            print(f"in-memory step, torch.compile: {out['ceiling_compiled']:.1f} samples/s", flush=True)
        except Exception as exc:  # a compile failure is a finding, not the end of the run
            out["ceiling_compiled"] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
            print(f"torch.compile: {out['ceiling_compiled']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="medclip-gpu-") as tmp:
        tmp = Path(tmp)
        if not args.no_end_to_end:
            compiled = isinstance(out.get("ceiling_compiled"), float) and out["ceiling_compiled"] > 1.03 * out["ceiling"]
            out["end_to_end_compiled"] = compiled
            if compiled:  # the compiled step is the one to reach: the ceiling is its figure
                out["ceiling_eager"], out["ceiling"] = out["ceiling"], out["ceiling_compiled"]
                out["mfu_ceiling"] = flops * out["ceiling"] / args.batch_size / (args.peak_tflops * 1e12)
            out["end_to_end"], out["end_to_end_wall_s"] = end_to_end(args, tmp / "run", compiled)
            out["mfu_end_to_end"] = flops * out["end_to_end"] / args.batch_size / (args.peak_tflops * 1e12)
            print(f"medclip finetune: {out['end_to_end']:.1f} samples/s ({out['end_to_end_wall_s']:.0f} s in all)", flush=True)
        if not args.no_open_clip:
            out["open_clip_train"] = open_clip_side(args, tmp)
            print(f"open_clip_train: {out['open_clip_train']:.1f} samples/s", flush=True)

    eager = out.get("ceiling_eager", out["ceiling"])
    print(f"\n{'what':34} {'samples/s':>10} {'ratio':>8} {'target':>8}")
    print(f"{'in-memory engine step, eager':34} {eager:>10.1f}")
    if isinstance(out.get("ceiling_compiled"), float):
        print(f"{'  same, compiled blocks':34} {out['ceiling_compiled']:>10.1f} {out['ceiling_compiled'] / eager:>7.2f}x")
    if "end_to_end" in out:
        which = "compiled" if out.get("end_to_end_compiled") else "eager"
        print(f"{'medclip finetune (' + which + ') / ceiling':34} {out['end_to_end']:>10.1f} "
              f"{100 * out['end_to_end'] / out['ceiling']:>7.0f}% {'>= 90%':>8}")
    if "open_clip_train" in out:
        print(f"{'open_clip_train':34} {out['open_clip_train']:>10.1f}")
        if "end_to_end" in out:
            print(f"{'medclip / open_clip_train':34} {'':>10} {out['end_to_end'] / out['open_clip_train']:>7.2f}x {'>= 3x':>8}")
    print(f"MFU at {args.peak_tflops:.0f} TFLOP/s peak: ceiling {100 * out['mfu_ceiling']:.1f}%"
          + (f", end to end {100 * out['mfu_end_to_end']:.1f}%" if "mfu_end_to_end" in out else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
    return out


if __name__ == "__main__":
    main()
