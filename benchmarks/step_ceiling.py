"""The ceiling of fine-tuning throughput: medclip's own training step on batches already in memory.

The step is the engine's (``medclip_cli.training.trainer.Trainer.train_step``: normalisation, the pooled /
length-trimmed forward, the weighted CLIP loss, backward, fused AdamW, scheduler, logit-scale
clamp), fed from a few pre-made batches (random uint8 pixels, real MedPix captions tokenised) so
no time goes to reading or decoding images. Next to it, in the same run, ``medclip finetune``
end to end on the same split (``finetune_throughput.run_medclip``): the fraction of the ceiling
that the whole pipeline reaches. ``--rounds`` alternates the two so that load slows both alike.

    python benchmarks/step_ceiling.py --encoders vit-b-32 rn50 --steps 8 --rounds 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def captions_for(data: Path | None, split: str, n: int) -> list[str]:
    """``n`` captions of the split (cycled), or a synthetic mix of short and context-filling ones."""
    captions: list[str] = []
    if data is not None and data.exists():
        from medclip_cli.data import load_dataset

        captions = [s.caption for s in load_dataset(data, split).samples if s.caption]
    if not captions:
        captions = ["axial ct of the chest with contrast " * (1 + 8 * (k % 8 == 0)) for k in range(n)]
    return [captions[k % len(captions)] for k in range(n)]


def make_step_run(encoder: str, *, batch_size: int, device: str, precision: str, image_size: int | None = None,
                  total_steps: int = 10_000, seed: int = 0, output: Path | None = None, **config):
    """The engine's trainer as ``train()`` builds it (``build_trainer``: model, AdamW, schedule,
    loss, step module), random init, without loading data: call ``run.train_step(batches)``
    with in-memory batches."""
    from medclip_cli.training.config import TrainConfig
    from medclip_cli.training.trainer import build_trainer

    cfg = TrainConfig(output=output or Path(tempfile.gettempdir()) / "medclip-step-ceiling", data=Path("."),
                      encoder=encoder, pretrained="none", image_size=image_size, batch_size=batch_size,
                      precision=precision, device=device, grad_clip=config.pop("grad_clip", 0.0),
                      val_split=None, seed=seed, workers=0, **config)
    return build_trainer(cfg, total_steps)


def memory_batches(run, captions: list[str], count: int = 4, seed: int = 0):
    """``count`` batches in the loader's own form (uint8 NHWC pixels, tokens), pinned on CUDA."""
    import torch

    cfg, size = run.cfg, run.model.preprocess.image_size
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in range(count):
        pixels = torch.randint(0, 256, (cfg.batch_size, size, size, 3), dtype=torch.uint8, generator=g)
        if run.device.type == "cuda":
            pixels = pixels.pin_memory()
        text = captions[k * cfg.batch_size : (k + 1) * cfg.batch_size]
        tokens = run.model.tokenize(text).long()
        out.append((pixels, tokens.pin_memory() if run.device.type == "cuda" else tokens, None, None))
    return out


def time_steps(run, batches, steps: int, warmup: int, chunk: int | None = None) -> list[float]:
    """Seconds per engine step after ``warmup`` untimed ones: one figure per ``chunk`` steps run
    back to back, the device synchronised only at the chunk's ends (on a GPU the host queues the
    next step while the device runs this one, as in training; 1 step per chunk on a CPU)."""
    import torch

    it = cycle(batches)
    cuda = run.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    chunk = chunk or (5 if cuda else 1)
    for _ in range(warmup):
        run.train_step(it)
    sync()
    times = []
    for _ in range(max(1, steps // chunk)):
        start = time.perf_counter()
        for _ in range(chunk):
            run.train_step(it)
        sync()
        times.append((time.perf_counter() - start) / chunk)
    return times


def cycle(batches):
    """The in-memory batches, over and over (what ``Trainer.train_step`` pulls from)."""
    while True:
        yield from batches


def device_reads(run, batch_iter, steps: int) -> list[str]:
    """Where ``steps`` engine steps on a CUDA device wait for the device (``torch.cuda`` sync debug
    mode): one ``file:line: message`` per place; the step should have none."""
    import warnings

    import torch

    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                run.train_step(batch_iter)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    # Only the mode's reports ("called a synchronizing CUDA operation"), not its own notice that
    # it is a prototype.
    return sorted(
        {f"{w.filename}:{w.lineno}: {str(w.message)[:160]}" for w in caught if "called a synchronizing" in str(w.message)}
    )


def ceiling(encoder: str, args, captions: list[str]) -> float:
    run = make_step_run(encoder, batch_size=args.batch_size, device=args.device, precision=args.precision,
                        image_size=args.image_size)
    times = time_steps(run, memory_batches(run, captions), args.steps, args.skip)
    return args.batch_size / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "medpix2")
    parser.add_argument("--encoders", nargs="+", default=["vit-b-32", "rn50"])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    parser.add_argument("--skip", type=int, default=2, help="warm-up steps left out")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=2, help="end-to-end run's batch workers")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-end-to-end", action="store_true", help="only the in-memory ceiling")
    args = parser.parse_args()
    import torch

    from finetune_throughput import run_medclip, steady

    torch.manual_seed(0)
    captions = captions_for(args.data, "train", 4 * args.batch_size)
    print(f"threads {torch.get_num_threads()}, batch {args.batch_size}, {args.image_size} px, {args.precision} on "
          f"{args.device}, {args.steps} timed steps after {args.skip} warm-up, {args.rounds} round(s)", flush=True)
    rows = []
    for encoder in args.encoders:
        ceil, e2e = [], []
        for round_ in range(args.rounds):
            ceil.append(ceiling(encoder, args, captions))
            print(f"{encoder} round {round_ + 1}: in-memory step {ceil[-1]:.2f} samples/s", flush=True)
            if not args.no_end_to_end:
                e2e_args = argparse.Namespace(encoder=encoder, data=args.data, batch_size=args.batch_size,
                                              workers=args.workers, steps=args.steps + args.skip)
                with tempfile.TemporaryDirectory(prefix="medclip-ceiling-") as tmp:
                    rates, setup, peak = run_medclip(e2e_args, Path(tmp) / "run")
                e2e.append(steady(rates, args.skip, args.batch_size))
                print(f"{encoder} round {round_ + 1}: medclip finetune end to end {e2e[-1]:.2f} samples/s", flush=True)
        rows.append((encoder, statistics.median(ceil), statistics.median(e2e) if e2e else None))
    print(f"\n{'encoder':10} {'in-memory step':>16} {'end to end':>12} {'fraction':>9}")
    for encoder, c, e in rows:
        print(f"{encoder:10} {c:>12.2f} /s {('%.2f /s' % e) if e else '-':>12} {('%.0f%%' % (100 * e / c)) if e else '-':>9}")


if __name__ == "__main__":
    main()
