"""Throughput and peak memory of ``classify DIR --recursive --output predictions.csv`` at 1k and 10k images.

Writes synthetic images (8-bit PNG, 16-bit PNG, and DICOM without an extension, in nested
folders), then classifies each folder in a fresh Python process that reports images/s and its own
peak RSS (``ru_maxrss``). Constant memory shows as a 10k/1k RSS ratio near 1; a reader that
held every path or every row would grow with the count. Prints both sizes side by side.

    PYTHONPATH=. python benchmarks/folder_classify.py [--sizes 1000 10000] [--encoder test-vit]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_CHILD = r"""
import json, resource, sys, time, torch
from pathlib import Path
from medclip_cli.evaluation.folder_classify import classify_folder
from medclip_cli.models import resolve_model
folder, out, encoder, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(int(sys.argv[5]))
torch.manual_seed(0)
model = resolve_model(None, encoder, None, "none")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
s = classify_folder(model, [Path(folder)], ["CT scan", "MRI scan", "chest X-ray", "ultrasound"], ["a {}"], Path(out),
                    recursive=True, batch_size=batch)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"n": s.n_classified, "errors": s.n_errors, "seconds": s.seconds,
                  "rss_after_model_mib": before / 1024, "peak_rss_mib": peak / 1024}))
"""


def make_images(root: Path, n: int) -> None:
    """``n`` images, 100 per folder, two levels deep; every 10th a 16-bit PNG, every 25th a DICOM without extension."""
    from PIL import Image

    rng = np.random.default_rng(n)
    for i in range(n):
        folder = root / f"p{i // 1000:03d}" / f"s{(i // 100) % 10:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        if i % 25 == 0:
            _dicom(folder / f"IM{i:06d}", rng.integers(0, 2000, (64, 64)))
        elif i % 10 == 0:
            Image.fromarray(rng.integers(0, 60000, (64, 64)).astype(np.uint16)).save(folder / f"{i:06d}.png")
        else:
            Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(folder / f"{i:06d}.png")


def _dicom(path: Path, raw: np.ndarray) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, (ds.Rows, ds.Columns) = "CT", raw.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = raw.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--encoder", default="test-vit")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    print(f"CPU: {cpu}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}; encoder {args.encoder} (random init); "
          f"batch {args.batch_size}; torch threads {args.threads}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            folder = Path(tmp) / f"images_{n}"
            start = time.perf_counter()
            make_images(folder, n)
            print(f"wrote {n} images in {time.perf_counter() - start:.1f}s")
            out = Path(tmp) / f"predictions_{n}.csv"
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
            proc = subprocess.run(
                [sys.executable, "-c", _CHILD, str(folder), str(out), args.encoder, str(args.batch_size), str(args.threads)],
                capture_output=True, text=True, env=env, check=True,
            )
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            rows = sum(1 for _ in open(out)) - 1
            assert rows == n == r["n"], (rows, n, r)
            results[n] = r
            print(f"{n:>6} images: {n / r['seconds']:.1f} images/s, peak RSS {r['peak_rss_mib']:.0f} MiB "
                  f"(after model load {r['rss_after_model_mib']:.0f} MiB), {r['errors']} errors, {rows} rows written")
    sizes = sorted(results)
    if len(sizes) >= 2:
        lo, hi = results[sizes[0]], results[sizes[-1]]
        print(f"\n{'':<22}{sizes[0]:>10}{sizes[-1]:>10}{'ratio':>10}")
        rate_lo, rate_hi = sizes[0] / lo["seconds"], sizes[-1] / hi["seconds"]
        print(f"{'images/s':<22}{rate_lo:>10.1f}{rate_hi:>10.1f}{rate_hi / rate_lo:>10.2f}")
        print(f"{'peak RSS (MiB)':<22}{lo['peak_rss_mib']:>10.0f}{hi['peak_rss_mib']:>10.0f}{hi['peak_rss_mib'] / lo['peak_rss_mib']:>10.2f}")
        grow_lo = lo["peak_rss_mib"] - lo["rss_after_model_mib"]
        grow_hi = hi["peak_rss_mib"] - hi["rss_after_model_mib"]
        print(f"{'RSS growth in run':<22}{grow_lo:>10.0f}{grow_hi:>10.0f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
