"""Where a Python program's threads spend their time, where py-spy cannot run (a GPU machine
without it, a container without ptrace): a thread samples every other thread's stack at a fixed
interval and, when the program ends, writes per thread the lines most often on top of its stack
and the medclip lines most often below them.

A thread blocked in C (waiting for the device, for a lock, for a batch) shows the Python line
that called in, which is what the question "what is the training loop waiting for" needs.

    python benchmarks/stack_sampler.py --out stacks.txt -m medclip_cli.cli finetune ...
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

OURS = (os.sep + "medclip_cli" + os.sep, os.sep + "benchmarks" + os.sep)


def _where(frame) -> str:
    code = frame.f_code
    return f"{Path(code.co_filename).name}:{frame.f_lineno} {code.co_name}"


class Sampler:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.top: dict[str, Counter] = defaultdict(Counter)
        self.ours: dict[str, Counter] = defaultdict(Counter)
        self.samples: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stack-sampler", daemon=True)

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                name = names.get(ident, str(ident))
                self.samples[name] += 1
                self.top[name][_where(frame)] += 1
                f = frame
                while f is not None and not any(part in f.f_code.co_filename for part in OURS):
                    f = f.f_back
                if f is not None:
                    self.ours[name][_where(f)] += 1

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def report(self, limit: int = 12) -> str:
        lines = [f"stack samples every {1000 * self.interval:.0f} ms"]
        for name, total in self.samples.most_common():
            lines.append(f"\n== thread {name}: {total} samples")
            for title, counter in (("on top of the stack", self.top[name]), ("innermost medclip line", self.ours[name])):
                lines.append(f"  {title}:")
                lines += [f"    {100 * n / total:5.1f}%  {where}" for where, n in counter.most_common(limit)]
        return "\n".join(lines) + "\n"


def main() -> None:
    argv = sys.argv[1:]
    if "-m" not in argv:
        raise SystemExit("usage: stack_sampler.py [--out FILE] [--interval S] -m module [args...]")
    at = argv.index("-m")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="where the report goes (default: stderr)")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between samples")
    args = parser.parse_args(argv[:at])
    module, sys.argv = argv[at + 1], [argv[at + 1], *argv[at + 2 :]]
    sampler = Sampler(args.interval)
    started = time.monotonic()
    try:
        with sampler:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        text = f"{module}: {time.monotonic() - started:.1f} s\n" + sampler.report()
        if args.out is None:
            sys.stderr.write(text)
        else:
            args.out.write_text(text)


if __name__ == "__main__":
    main()
