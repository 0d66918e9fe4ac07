"""Decode cache benchmark: build time, and one pass over a split with and without the cache.

A "pass" is what an epoch or an evaluation does with the data: get the uint8 pixels of every
image (``load_pixels``) as contiguous batches ("pixels" figures), and turn them into normalised
float tensors on the CPU ("pass" figures; training does this step on the GPU instead). All three
figures come from one run on the same machine, with a fresh cache folder (``MEDCLIP_HOME``).

    python benchmarks/data_cache.py --data ../shared/medpix2 --split train --image-size 224
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _pass(dataset, cfg, *, cache: bool, batch_size: int) -> tuple[float, float, object]:
    """(seconds to read every uint8 batch, seconds for the whole pass with normalising, the PixelSet)."""
    import numpy as np

    from medclip_cli.data.pixels import load_pixels
    from medclip_cli.data.preprocess import normalize_batch

    start = time.perf_counter()
    pixels = load_pixels(dataset, cfg, cache=cache)
    batches = [np.array(pixels.array[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
    read = time.perf_counter() - start
    for batch in batches:
        normalize_batch(batch, cfg)
    return read, time.perf_counter() - start, pixels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "medpix2")
    parser.add_argument("--split", default="train")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--home", type=Path, default=None, help="cache folder (default: a fresh temporary one)")
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="medclip-bench-"))
    os.environ["MEDCLIP_HOME"] = str(home)
    import numpy as np
    import torch

    from medclip_cli.data import load_dataset
    from medclip_cli.data.pixels import load_pixels
    from medclip_cli.data.preprocess import PreprocessConfig

    dataset = load_dataset(args.data, args.split)
    cfg = PreprocessConfig(image_size=args.image_size)
    _pass(dataset, cfg, cache=False, batch_size=args.batch_size)  # warm the OS file cache and imports

    no_cache_load, no_cache_pass, plain = _pass(dataset, cfg, cache=False, batch_size=args.batch_size)
    build_start = time.perf_counter()
    load_pixels(dataset, cfg, cache=True)  # hash every file, decode, write the cache entry
    build = time.perf_counter() - build_start
    cached_load, cached_pass, cached = _pass(dataset, cfg, cache=True, batch_size=args.batch_size)
    assert np.array_equal(plain.array, cached.array), "cached pixels differ from decoded pixels"

    result = {
        "data": str(args.data),
        "split": args.split,
        "images": len(dataset),
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "cache_build_s": round(build, 3),
        "pass_without_cache_s": round(no_cache_pass, 3),
        "pass_with_cache_s": round(cached_pass, 3),
        "pixels_without_cache_s": round(no_cache_load, 3),
        "pixels_with_cache_s": round(cached_load, 3),
        "torch_threads": torch.get_num_threads(),
        "cache_bytes": sum(p.stat().st_size for p in (home / "cache").rglob("*") if p.is_file()),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
