"""Tokenising a split's captions: every run (as before the token cache) against the token cache's
first run (tokenise into the int32 file) and second run (map the file).

Synthetic captions (8 radiology words and a number), open_clip's ``SimpleTokenizer`` with 77
tokens; each way in a fresh process (so peak RSS is its own), in a temporary ``MEDCLIP_HOME``.

    python benchmarks/token_cache.py                  # 200,000 captions
    python benchmarks/token_cache.py --captions 20000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _memory() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "RssAnon"):
            out[key] = int(value.split()[0]) / 1024  # kB -> MiB
    return out


def child(way: str, n: int) -> dict:
    import numpy as np
    import torch
    from open_clip.tokenizer import SimpleTokenizer

    from medclip_cli.models.token_cache import caption_tokens

    rng = np.random.default_rng(0)
    words = "axial coronal sagittal ct mri xray chest brain abdomen liver lesion mass fracture normal left right".split()
    captions = [" ".join(words[int(i)] for i in rng.integers(0, len(words), 8)) + f" {k}" for k in range(n)]
    tokenizer = SimpleTokenizer(context_length=77)
    before = _memory()
    start = time.perf_counter()
    if way == "every run":
        tokens = tokenizer(captions).long()  # what load_pairs did before the token cache
    else:
        tokens = torch.from_numpy(caption_tokens(tokenizer, tokenizer, captions, 77))
    seconds = time.perf_counter() - start
    after = _memory()
    assert tokens.shape == (n, 77)
    return {"s": seconds, "peak_mib": after["VmHWM"] - before["VmHWM"], "anon_mib": after["RssAnon"] - before["RssAnon"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", type=int, default=200_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    home = Path(tempfile.mkdtemp(prefix="medclip-tokens-"))
    env = {**os.environ, "MEDCLIP_HOME": str(home), "PYTHONPATH": str(REPO)}
    rows = {}
    try:
        for way in ("every run", "cache, 1st run", "cache, 2nd run"):
            proc = subprocess.run([sys.executable, __file__, "--child", way, str(args.captions)], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise SystemExit(f"{way} failed:\n{proc.stderr[-3000:]}")
            rows[way] = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(home, ignore_errors=True)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"CPU: {cpu} ({os.cpu_count()} logical cores); {args.captions:,} captions, SimpleTokenizer, 77 tokens")
    print(f"{'':>15} | {'seconds':>8} | {'peak RSS + MiB':>14} | {'anon + MiB':>10} | {'time vs every run':>17}")
    base = rows["every run"]["s"]
    for way, r in rows.items():
        print(f"{way:>15} | {r['s']:>8.2f} | {r['peak_mib']:>14.0f} | {r['anon_mib']:>10.0f} | {r['s'] / base:>16.3f}x")


if __name__ == "__main__":
    main()
