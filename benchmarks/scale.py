"""How medclip's data pipeline grows with the size of the set: 2k, 20k (and 200k) image–caption pairs.

Builds synthetic sets (small PNGs, a CSV manifest) under a scratch folder, removed afterwards, and
for each size runs, each in a fresh process (so peak RSS is that phase's own):

* ``build`` (with 1 and with 2 decode processes, each into an empty cache folder): hashing every
  file (in those processes from 4,096 files on), then decoding into the decode cache — seconds,
  images/s of the decode and of the whole build, and the cores the process tree kept busy;
* ``tokens``: the first run's ``load_pairs`` after the build (pixels from the cache just built,
  every caption tokenised into the token cache): seconds;
* ``warm``: a second run's start-up (read the manifest, stat the files, open the cached entry;
  nothing is decoded), then the training pipeline of ``finetune`` — ``load_pairs`` (the token
  cache the ``tokens`` phase wrote: nothing tokenised),
  ``Batches`` in epoch order and the engine's training step with the tiny ``test-vit`` encoder
  (32 px) — for ``--steps`` steps spread over the epoch's random order (so the step reads rows
  from the whole memory map): milliseconds per sample of the best step and of the median step
  (the mean is in the JSON as ``sample_ms_mean``). The encoder is tiny so that the figure is the
  pipeline's, not the model's. The ``warm`` runs come last, ``--warm-rounds`` of them per size,
  interleaved over the sizes (2k, 200k, 2k, 200k, ...), and the table shows each figure's median
  over the rounds: the machine's speed drifts by ±20 % from one minute to the next (another VM on
  the host, the CPU's clock), which single runs of the sizes minutes apart mistook for growth.

Peak RSS is the process's high-water mark (VmHWM, which counts the cache's pages the process
touched as well as its own memory; training reads its batches' rows with pread, so it maps
none); "anon" is the process's own memory (RssAnon) at the end.

    python benchmarks/scale.py                   # 2k and 20k
    python benchmarks/scale.py --with-200k       # and 200k (~15 minutes, ~2 GB scratch)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name  # benchmarks/machine.py, beside this script

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_set(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` PNGs of 40–56 px (smooth gradients with noise, like a scan), captions in a CSV."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    words = "axial coronal sagittal ct mri xray chest brain abdomen liver lesion mass fracture normal left right".split()
    rows = ["image,caption,split"]
    for k in range(n):
        folder = root / "img" / f"{k // 1000:04d}"
        if k % 1000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        w, h = 40 + k % 17, 40 + (k * 7) % 17
        base = np.add.outer(np.linspace(0, 1, h), np.linspace(0, 1, w))[..., None] * rng.integers(20, 120, 3)
        image = np.clip(base + rng.integers(0, 40, (h, w, 1)), 0, 255).astype(np.uint8)
        name = f"img/{k // 1000:04d}/{k:07d}.png"
        Image.fromarray(image).save(root / name, compress_level=1)
        caption = " ".join(words[int(i)] for i in rng.integers(0, len(words), 8))
        rows.append(f"{name},{caption} {k},train")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


def _memory() -> dict:
    status = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "RssAnon"):
            status[key] = int(value.split()[0]) / 1024  # kB -> MiB
    return {"peak_rss_mib": round(status.get("VmHWM", 0), 1), "anon_mib": round(status.get("RssAnon", 0), 1)}


class TreeCpu:
    """CPU seconds of this process and all its descendants (the decode workers are children of
    multiprocessing's fork server, not of this process), sampled from /proc every 0.1 s."""

    def __enter__(self):
        import threading

        self.start = self._times()
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()
        self.seconds = sum(self.seen.values()) - sum(self.start.get(p, 0.0) for p in self.seen)

    def _run(self):
        while not self._stop.wait(0.1):
            self._sample()

    def _sample(self):
        for pid, seconds in self._times().items():
            self.seen[pid] = max(self.seen.get(pid, 0.0), seconds)

    @staticmethod
    def _times() -> dict[int, float]:
        tick = os.sysconf("SC_CLK_TCK")
        out, todo = {}, [os.getpid()]
        while todo:
            pid = todo.pop()
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                out[pid] = (int(fields[11]) + int(fields[12])) / tick
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError, IndexError):
                continue
        return out


def child_build(manifest: Path, workers: int) -> dict:
    """First run: hash every file, decode everything into the cache."""
    os.environ["MEDCLIP_DECODE_WORKERS"] = str(workers)
    from medclip_cli.data import load_dataset
    from medclip_cli.data.cache import content_hashes
    from medclip_cli.data.pixels import load_pixels
    from medclip_cli.data.preprocess import PreprocessConfig

    dataset = load_dataset(manifest, "train")
    with TreeCpu() as cpu:
        start = time.perf_counter()
        content_hashes(dataset)
        hashed = time.perf_counter()
        pixels = load_pixels(dataset, PreprocessConfig(image_size=32))
        decoded = time.perf_counter()
    cpu_s = cpu.seconds
    assert len(pixels) == len(dataset)
    # cores_busy: CPU seconds of this process and its workers per wall second, hashing and
    # decoding together (on a machine shared with other work, whether the workers ran side by side).
    return {"hash_s": hashed - start, "decode_s": decoded - hashed, "decode_ips": len(dataset) / (decoded - hashed),
            "cpu_ms_per_image": 1000 * cpu_s / len(dataset), "cores_busy": cpu_s / (decoded - start), **_memory()}  # fmt: skip


def _trainer(manifest: Path, batch: int, steps: int):
    import torch

    from medclip_cli.training.config import TrainConfig
    from medclip_cli.training.trainer import build_trainer

    torch.manual_seed(0)
    cfg = TrainConfig(output=manifest.parent / "run", data=manifest, encoder="test-vit", pretrained="none",
                      batch_size=batch, device="cpu", precision="fp32", val_split=None, workers=1)  # fmt: skip
    return cfg, build_trainer(cfg, steps + 2)


def child_tokens(manifest: Path, batch: int) -> dict:
    """First run's ``load_pairs`` (the decode cache already built): tokenises every caption."""
    from medclip_cli.data import load_dataset
    from medclip_cli.progress import NullProgress
    from medclip_cli.training.batches import load_pairs

    dataset = load_dataset(manifest, "train")
    _, trainer = _trainer(manifest, batch, 0)
    t0 = time.perf_counter()
    pairs = load_pairs(dataset, trainer.model, strict=False, progress=NullProgress(), soft_label=None, soft=False)
    return {"pairs_s": time.perf_counter() - t0, "pairs": len(pairs), **_memory()}


def child_warm(manifest: Path, steps: int, batch: int) -> dict:
    """Second run: start-up from the cache, then ``steps`` training steps over the epoch order."""
    start = time.perf_counter()
    from medclip_cli.data import load_dataset
    from medclip_cli.data.pixels import load_pixels
    from medclip_cli.data.preprocess import PreprocessConfig

    dataset = load_dataset(manifest, "train")
    pixels = load_pixels(dataset, PreprocessConfig(image_size=32))
    startup = time.perf_counter() - start

    import torch

    from medclip_cli.progress import NullProgress
    from medclip_cli.training.batches import Batches, load_pairs
    from medclip_cli.training.distributed import DistInfo

    cfg, trainer = _trainer(manifest, batch, steps)
    t0 = time.perf_counter()
    pairs = load_pairs(dataset, trainer.model, strict=False, progress=NullProgress(), soft_label=None, soft=False)
    pairs_s = time.perf_counter() - t0
    assert len(pairs) == len(pixels)
    per_epoch = len(pairs) // batch
    # Steps spread over the epoch: micro-batches 0, k, 2k, ... so rows come from the whole map.
    stride = max(1, per_epoch // (steps + 2))
    segments = [(e, m, 1) for e in range(steps + 2) for m in range(0, per_epoch, stride)][: steps + 2]
    it = iter(Batches(pairs, cfg, torch.device("cpu"), DistInfo(), segments))
    for _ in range(2):  # warm-up
        trainer.train_step(it)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.train_step(it).item()
        times.append(time.perf_counter() - t0)
    it.close()
    # The best step is the pipeline's cost; the median shows what the machine added (one step is
    # ~0.1 s here, so other processes' bursts move it from run to run).
    return {"startup_s": startup, "pairs_s": pairs_s, "sample_ms": 1000 * min(times) / batch,
            "sample_ms_median": 1000 * statistics.median(times) / batch,
            "sample_ms_mean": 1000 * sum(times) / (steps * batch), **_memory()}  # fmt: skip


def _median_run(runs: list[dict]) -> dict:
    """Each timing's median over the rounds; memory: the largest round's."""
    out = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    out.update(peak_rss_mib=max(r["peak_rss_mib"] for r in runs), anon_mib=max(r["anon_mib"] for r in runs), rounds=runs)
    return out


def _child(args: list[str], home: Path) -> dict:
    env = {**os.environ, "MEDCLIP_HOME": str(home), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--with-200k", action="store_true", help="add 200,000 pairs")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="decode processes to compare")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warm-rounds", type=int, default=3, help="warm runs per size, interleaved over the sizes")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--scratch", type=Path, default=None, help="where the sets go (default: a temporary folder)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, manifest, value = args.child
        if kind == "build":
            out = child_build(Path(manifest), int(value))
        elif kind == "tokens":
            out = child_tokens(Path(manifest), args.batch_size)
        else:
            out = child_warm(Path(manifest), int(value), args.batch_size)
        print(json.dumps(out))
        return

    sizes = sorted(set(args.sizes + ([200_000] if args.with_200k else [])))
    if args.scratch is not None:
        args.scratch.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="medclip-scale-", dir=args.scratch))
    rows = []
    try:
        for n in sizes:
            root = scratch / f"set{n}"
            t0 = time.perf_counter()
            manifest = make_set(root, n)
            print(f"{n} pairs generated in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
            row = {"pairs": n}
            for w in args.workers:
                home = scratch / f"home{n}-{w}"
                row[f"build{w}"] = _child(["build", str(manifest), str(w)], home)
                print(f"  build, {w} process(es): {row[f'build{w}']}", file=sys.stderr, flush=True)
                if w != args.workers[-1]:
                    shutil.rmtree(home)
            # The first run's load_pairs fills the token cache; the warm runs read both caches.
            row["tokens"] = _child(["tokens", str(manifest), "0"], home)
            print(f"  tokens: {row['tokens']}", file=sys.stderr, flush=True)
            row["manifest"], row["home"] = manifest, home
            rows.append(row)
        os.sync()
        for k in range(args.warm_rounds):  # interleaved, so that a drift of the machine hits every size alike
            for row in rows:
                row.setdefault("warm_rounds", []).append(_child(["warm", str(row["manifest"]), str(args.steps)], row["home"]))
                print(f"  warm {k + 1}, {row['pairs']} pairs: {row['warm_rounds'][-1]}", file=sys.stderr, flush=True)
        for row in rows:
            row["warm"] = _median_run(row.pop("warm_rounds"))
            row.pop("manifest"), row.pop("home")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report(rows, args)


def report(rows: list[dict], args) -> None:
    import torch

    first = rows[0]
    w1, wn = args.workers[0], args.workers[-1]
    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical cores), torch {torch.__version__}, {torch.get_num_threads()} threads;"
          f" 32 px cache, test-vit, batch {args.batch_size}, {args.steps} steps spread over each epoch (ms/sample: best / median step);"
          f" warm figures: the median of {args.warm_rounds} rounds interleaved over the sizes")  # fmt: skip
    print(f"build = hashing every file + decoding into the cache (img/s of the two together), with {w1} and {wn} process(es)")
    head = (f"{'pairs':>8} | {f'hash s {w1}p/{wn}p':>13} | {f'decode img/s {w1}p/{wn}p':>20} | {f'build img/s {w1}p/{wn}p':>19} | {f'{wn}p/{w1}p':>6} | {f'cores busy {w1}p/{wn}p':>17} |"
            f" {'start-up s':>10} | {'load_pairs s 1st/2nd':>20} | {'ms/sample best/med':>18} | {'peak RSS MiB':>12} | {'anon MiB':>8} | {'vs first: build, start-up, ms/sample best/med, RSS':>50}")  # fmt: skip
    print(head)
    print("-" * len(head))

    def build_ips(b: dict, n: int) -> float:
        return n / (b["hash_s"] + b["decode_s"])

    for r in rows:
        b1, bn, warm, n = r[f"build{w1}"], r[f"build{wn}"], r["warm"], r["pairs"]
        ratios = (
            f"{(bn['hash_s'] + bn['decode_s']) / (first[f'build{wn}']['hash_s'] + first[f'build{wn}']['decode_s']):.1f}x, "
            f"{warm['startup_s'] / first['warm']['startup_s']:.1f}x, {warm['sample_ms'] / first['warm']['sample_ms']:.2f}x/"
            f"{warm['sample_ms_median'] / first['warm']['sample_ms_median']:.2f}x, "
            f"{warm['peak_rss_mib'] / first['warm']['peak_rss_mib']:.2f}x"
        )
        print(
            f"{n:>8} | {b1['hash_s']:>6.2f}/{bn['hash_s']:<6.2f} | {b1['decode_ips']:>9.0f}/{bn['decode_ips']:<10.0f} | "
            f"{build_ips(b1, n):>9.0f}/{build_ips(bn, n):<9.0f} | {build_ips(bn, n) / build_ips(b1, n):>6.2f} | "
            f"{b1.get('cores_busy', 0):>8.2f}/{bn.get('cores_busy', 0):<8.2f} | {warm['startup_s']:>10.2f} | "
            f"{r['tokens']['pairs_s']:>9.2f}/{warm['pairs_s']:<10.2f} | {warm['sample_ms']:>8.3f}/{warm['sample_ms_median']:<9.3f} | "
            f"{warm['peak_rss_mib']:>12.0f} | {warm['anon_mib']:>8.0f} | {ratios:>50}"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
