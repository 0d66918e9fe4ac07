"""What the batch threads cost the training step: the engine's step fed by ``Batches`` with the
batches made in the main thread (``--workers 0``) and in threads, with the threads gathering by
NumPy (what ``Batches._make`` does) and by torch indexing (what it did before, and what a
``Dataset`` with tensors does).

A torch kernel in a second thread sets up that thread's intra-op (OpenMP) pool; on this machine
that slowed the main thread's step by a third or more even though each batch took under a
millisecond to make. Random pixels at the model's size, real MedPix captions; alternating rounds.

    python benchmarks/batch_threads.py --encoder test-vit --batch-size 64 --rounds 2
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def _torch_make(self, epoch, order, micro):
    """The batch gathered by torch indexing in the thread (the former ``Batches._make``)."""
    import torch

    b = self.cfg.batch_size
    idx = order[micro * b : (micro + 1) * b]
    return torch.from_numpy(self.data.pixels)[idx], self.data.texts[idx], None, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "medpix2")
    parser.add_argument("--encoder", default="test-vit")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import numpy as np
    import torch

    from medclip_cli.training.batches import Batches, PairSet
    from medclip_cli.training.distributed import DistInfo
    from step_ceiling import captions_for, make_step_run

    run = make_step_run(args.encoder, batch_size=args.batch_size, device="cpu", precision="fp32")
    n = 25 * args.batch_size
    captions = captions_for(args.data, "train", n)
    size = run.model.preprocess.image_size
    pixels = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    data = PairSet(pixels, run.model.tokenize(captions).long(), captions, [{}] * n, None, 0)
    numpy_make = Batches._make

    def rate(workers: int, make) -> float:
        Batches._make = make
        cfg = dataclasses.replace(run.cfg, workers=workers)
        it = iter(Batches(data, cfg, run.device, DistInfo(), [(e, 0, 25) for e in range(100)]))
        for _ in range(5):
            run.train_step(it)
        start = time.perf_counter()
        for _ in range(args.steps):
            run.train_step(it)
        it.close()
        return args.batch_size * args.steps / (time.perf_counter() - start)

    cases = {"main thread": (0, numpy_make), "2 threads, NumPy": (2, numpy_make), "2 threads, torch": (2, _torch_make)}
    rates: dict[str, list[float]] = {name: [] for name in cases}
    print(f"{args.encoder}, batch {args.batch_size}, {torch.get_num_threads()} intra-op threads, {args.steps} steps")
    for _ in range(args.rounds):
        for name, (workers, make) in cases.items():
            rates[name].append(rate(workers, make))
    Batches._make = numpy_make
    base = max(rates["main thread"])
    print(f"{'batches made in':20} {'samples/s':>10} {'vs main thread':>15}")
    for name, values in rates.items():
        print(f"{name:20} {max(values):>10.1f} {max(values) / base:>14.2f}x")


if __name__ == "__main__":
    main()
