"""Streaming training data from WebDataset shards (``finetune --stream``) next to the cached path
and a plain webdataset pipeline like open_clip_train's, in one run, as ratios; then the peak RSS
of a streamed epoch as the number of shards grows.

Each path yields training batches of ``--batch`` samples at ``--size`` px with tokenised
captions, from the same synthetic PNG + caption set (images of 1.2 × size, so each is decoded and
resized):

- ``stream``: :class:`~medclip_cli.training.stream_batches.StreamBatches` (tarfile, decode,
  resize to uint8 as the decode cache does, tokenise), ``--workers`` DataLoader processes;
- ``cached``: :class:`~medclip_cli.training.batches.Batches` over the decode cache, already
  filled (the second run of a cached set: a gather from the memory map);
- ``webdataset``: ``wds.WebDataset(...).shuffle(1000).decode("pilrgb")`` → open_clip's train
  transform (``RandomResizedCrop``, tensor, normalise) and tokenizer → ``batched``, with a
  ``WebLoader`` of ``--workers`` processes: open_clip_train's ``get_wds_dataset`` pipeline.

    python benchmarks/shard_stream.py --samples 1024 --size 224 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scale import cpu_name  # noqa: E402


def write_set(folder: Path, samples: int, size: int, per_shard: int) -> Path:
    """``folder/img/*.png`` + ``pairs.csv``, and the same as shards under ``folder/shards``."""
    import numpy as np
    from PIL import Image

    from medclip_cli.data import load_dataset
    from medclip_cli.data.shards import write_shards

    rng = np.random.default_rng(0)
    (folder / "img").mkdir(parents=True)
    side = int(size * 1.2)
    rows = ["image,caption,split"]
    base = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    for k in range(samples):  # smooth-ish images (PNG compresses them like scans), each different
        image = np.roll(base, k, axis=1) // 2 + rng.integers(0, 64, (side, side, 3), dtype=np.uint8)
        Image.fromarray(image).save(folder / "img" / f"{k:06d}.png")
        rows.append(f"img/{k:06d}.png,a scan of case number {k} showing a finding,train")
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    write_shards(load_dataset(folder / "pairs.csv", "train"), folder / "shards", per_shard)
    return folder


class _Model:
    def __init__(self, size: int) -> None:
        import open_clip

        from medclip_cli.data.preprocess import PreprocessConfig

        self.preprocess = PreprocessConfig(image_size=size)
        self.tokenize = open_clip.get_tokenizer("ViT-B-32")


def _cfg(folder: Path, args, **settings):
    from medclip_cli.training.config import TrainConfig

    return TrainConfig(output=folder / "run", data=folder / "shards", split="all", batch_size=args.batch, workers=args.workers, **settings)


def run_stream(folder: Path, args) -> int:
    import torch

    from medclip_cli.data.shard_stream import open_shard_set
    from medclip_cli.training.distributed import DistInfo
    from medclip_cli.training.stream_batches import StreamBatches, StreamSource

    source = StreamSource(open_shard_set(folder / "shards", "all"), _Model(args.size))
    cfg = _cfg(folder, args, stream=True, shuffle_buffer=1000)
    steps = len(source) // args.batch
    return sum(len(b[0]) for b in StreamBatches(source, cfg, torch.device("cpu"), DistInfo(), [(0, 0, steps)]))


def run_cached(folder: Path, args, pairs) -> int:
    import torch

    from medclip_cli.training.batches import Batches
    from medclip_cli.training.distributed import DistInfo

    cfg = _cfg(folder, args)
    steps = len(pairs) // args.batch
    return sum(len(b[0]) for b in Batches(pairs, cfg, torch.device("cpu"), DistInfo(), [(0, 0, steps)]))


def load_cached(folder: Path, args):
    from medclip_cli.data import load_dataset
    from medclip_cli.progress import NullProgress
    from medclip_cli.training.batches import load_pairs

    dataset = load_dataset(folder / "pairs.csv", "train")
    return load_pairs(dataset, _Model(args.size), strict=False, progress=NullProgress(), soft_label=None, soft=False)


def run_webdataset(folder: Path, args) -> int:
    import open_clip
    import webdataset as wds

    transform = open_clip.image_transform(args.size, is_train=True)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    urls = sorted(str(p) for p in (folder / "shards").glob("*.tar"))
    pipeline = (
        wds.WebDataset(urls, shardshuffle=len(urls), nodesplitter=wds.split_by_node, empty_check=False)
        .shuffle(1000)
        .decode("pilrgb")
        .rename(image="png", text="txt")
        .map_dict(image=transform, text=lambda t: tokenizer(t)[0])
        .to_tuple("image", "text")
        .batched(args.batch, partial=False)
    )
    loader = wds.WebLoader(pipeline, batch_size=None, shuffle=False, num_workers=args.workers)
    return sum(len(images) for images, _ in loader)


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def rss_child(args) -> None:
    """(In a fresh process) stream one epoch of ``args.shards`` shards; print peak RSS in MiB."""
    folder = Path(args.folder)
    count = run_stream(folder, args)
    print(json.dumps({"samples": count, "peak_rss_mb": _peak_rss_mb()}))


def rss_by_shards(args, counts: list[int], per_shard: int) -> list[tuple[int, int, float]]:
    rows = []
    for shards in counts:
        folder = Path(tempfile.mkdtemp(prefix="medclip-stream-rss-"))
        try:
            write_set(folder, shards * per_shard, args.size, per_shard)
            out = subprocess.run(
                [sys.executable, __file__, "--rss-child", str(folder), "--size", str(args.size), "--batch", str(args.batch), "--workers", str(args.workers)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            got = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((shards, got["samples"], got["peak_rss_mb"]))
        finally:
            shutil.rmtree(folder)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--per-shard", type=int, default=128)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rss-shards", default="4,16,64", help="shard counts for the peak-RSS rows (32 samples each)")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        args.folder = args.rss_child
        rss_child(args)
        return
    os.environ.setdefault("MEDCLIP_HOME", tempfile.mkdtemp(prefix="medclip-stream-home-"))
    import webdataset

    folder = Path(tempfile.mkdtemp(prefix="medclip-stream-"))
    try:
        write_set(folder, args.samples, args.size, args.per_shard)
        pairs = load_cached(folder, args)  # fills the decode cache: the cached path's second run
        times: dict[str, list[float]] = {"stream": [], "cached": [], "webdataset": []}
        for _ in range(args.rounds):
            for name, run in (("stream", lambda: run_stream(folder, args)), ("cached", lambda: run_cached(folder, args, pairs)), ("webdataset", lambda: run_webdataset(folder, args))):
                start = time.perf_counter()
                count = run()
                assert count == args.samples // args.batch * args.batch, (name, count)
                times[name].append(time.perf_counter() - start)
    finally:
        shutil.rmtree(folder)
        shutil.rmtree(os.environ["MEDCLIP_HOME"], ignore_errors=True)
    print(
        f"CPU: {cpu_name()} ({os.cpu_count()} cores), load {os.getloadavg()[0]:.1f}; webdataset {webdataset.__version__}; "
        f"{args.samples} PNGs of {int(args.size * 1.2)} px -> {args.size} px in {args.samples // args.per_shard} shards, "
        f"batch {args.batch}, {args.workers} loader workers, best of {args.rounds}"
    )
    base = min(times["stream"])
    for name, values in times.items():
        best = min(values)
        print(f"{name:11} {best:7.2f} s  {args.samples / best:8.0f} samples/s  {best / base:6.2f}x stream's time")
    counts = [int(c) for c in args.rss_shards.split(",")]
    rows = rss_by_shards(args, counts, 32)
    first = rows[0][2]
    print("peak RSS of one streamed epoch (main process or largest worker), 32 samples per shard:")
    for shards, samples, rss in rows:
        print(f"  {shards:4d} shards {samples:6d} samples  {rss:7.0f} MiB  {rss / first:5.2f}x the {rows[0][0]}-shard run's")


if __name__ == "__main__":
    main()
