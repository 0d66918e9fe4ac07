"""Reading WebDataset tar shards: Python's ``tarfile`` (what ``medclip_cli/data/shards.py`` uses)
next to the ``webdataset`` package, both yielding each sample's raw members (no image decoding),
alternating rounds, best of each, same shards, same process.

    python benchmarks/shard_read.py --samples 5000 --per-shard 500 --rounds 3
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import cpu_name  # noqa: E402


def write(folder: Path, samples: int, per_shard: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    shards = []
    for first in range(0, samples, per_shard):
        path = folder / f"{first // per_shard:05d}.tar"
        with tarfile.open(path, "w") as archive:
            for k in range(first, min(samples, first + per_shard)):
                png = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(png, format="PNG")
                for name, blob in ((f"{k:09d}.png", png.getvalue()), (f"{k:09d}.txt", f"caption {k}".encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(blob)
                    archive.addfile(info, io.BytesIO(blob))
        shards.append(path)
    return shards


def read_tarfile(shards: list[Path]) -> int:
    count = 0
    for shard in shards:
        samples: dict[str, dict] = {}
        with tarfile.open(shard, mode="r|*") as archive:
            for member in archive:
                key, _, ext = member.name.partition(".")
                samples.setdefault(key, {})[ext] = archive.extractfile(member).read()
        count += len(samples)
    return count


def read_webdataset(shards: list[Path]) -> int:
    import webdataset as wds

    return sum(1 for _ in wds.WebDataset([str(s) for s in shards], shardshuffle=False, empty_check=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--per-shard", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import webdataset

    folder = Path(tempfile.mkdtemp(prefix="medclip-shards-"))
    try:
        shards = write(folder, args.samples, args.per_shard)
        times: dict[str, list[float]] = {"tarfile": [], "webdataset": []}
        for _ in range(args.rounds):
            for name, read in (("tarfile", read_tarfile), ("webdataset", read_webdataset)):
                start = time.perf_counter()
                assert read(shards) == args.samples, name
                times[name].append(time.perf_counter() - start)
    finally:
        shutil.rmtree(folder)
    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores), load {os.getloadavg()[0]:.1f}; webdataset {webdataset.__version__};"
          f" {args.samples} samples in {len(shards)} shards, best of {args.rounds}")  # fmt: skip
    base = min(times["tarfile"])
    for name, values in times.items():
        print(f"{name:11} {min(values):7.3f} s  {args.samples / min(values):9.0f} samples/s  {min(values) / base:5.2f}x tarfile's time")


if __name__ == "__main__":
    main()
