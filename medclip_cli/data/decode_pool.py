"""Decoding (and first hashing) a data set's images in several processes, each writing its rows into the cache file.

The decode cache's ``.npy`` is a memory map on disk; a worker opens the same file and writes the
rows of the samples it was given in place (row i = sample i), so nothing is pickled back but the
reasons of images that could not be read. :func:`medclip_cli.data.pixels._decode_into` then
closes the gaps of skipped images in order, so the file's bytes are the same as one process's.

The number of processes is ``MEDCLIP_DECODE_WORKERS`` (default: the cores this process may run
on, divided by torchrun's processes on this machine); 1 decodes in the calling process.
"""

from __future__ import annotations

import os
from pathlib import Path

from medclip_cli.data.preprocess import PreprocessConfig
from medclip_cli.errors import UsageError

ENV = "MEDCLIP_DECODE_WORKERS"
#: Fewer images than this are decoded in the calling process: starting workers costs ~0.5 s.
MIN_PARALLEL = 256


def decode_workers(requested: int | None = None) -> int:
    """How many processes fill the cache: ``requested``, else ``MEDCLIP_DECODE_WORKERS``, else the cores."""
    if requested is None:
        raw = os.environ.get(ENV, "").strip()
        if raw:
            try:
                requested = int(raw)
            except ValueError:
                raise UsageError(f"{ENV}={raw!r}: not a whole number", hint="set it to the number of decode processes, e.g. 4") from None
        else:
            try:
                cores = len(os.sched_getaffinity(0))
            except AttributeError:  # not on Linux
                cores = os.cpu_count() or 1
            # Under torchrun every process on a machine fills its cache at the same time: share the cores.
            try:
                local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
            except ValueError:
                local = 1
            requested = max(1, cores // local)
    if requested < 1:
        raise UsageError(f"{ENV}={requested}: must be 1 or more", hint="1 decodes in the main process")
    return requested


def _decode_rows(path: str, jobs: list[tuple[int, str]], preprocess: PreprocessConfig) -> list[tuple[int, str]]:
    """In a worker: decode each (row, image) of ``jobs`` into row ``row`` of the .npy at ``path``."""
    import numpy as np

    from medclip_cli.data.images import load_image
    from medclip_cli.data.preprocess import resize_to_uint8
    from medclip_cli.errors import ImageError

    out = np.load(path, mmap_mode="r+")
    failed = []
    for row, image in jobs:
        try:
            out[row] = resize_to_uint8(load_image(Path(image)), preprocess)
        except ImageError as exc:
            failed.append((row, str(exc)))
    out.flush()
    del out
    return failed


def can_start_workers() -> bool:
    """False when the worker processes could not start: like every spawn/forkserver pool they
    re-import the main script, which cannot be done for code read from stdin."""
    import sys

    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return main_file is None or os.path.exists(main_file)


def _context():
    import multiprocessing

    # forkserver/spawn: a fork of a process that already runs torch's threads is unsafe.
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # Imported once in the server, so each worker forked from it starts with them.
    context.set_forkserver_preload(["medclip_cli.data.decode_pool", "medclip_cli.data.images", "medclip_cli.data.preprocess"])
    return context


def decode_in_workers(
    path: str | os.PathLike,
    images: list[tuple[int, Path]],
    preprocess: PreprocessConfig,
    workers: int,
    *,
    strict: bool,
    advance,
) -> dict[int, str]:
    """Decode ``images`` ((row, path) pairs) into the .npy at ``path`` with ``workers`` processes.

    Returns {row: reason} for the images that could not be read. With ``strict`` the first
    failure stops the pool (pending chunks are cancelled) and is returned alone.
    ``advance(n)`` is called as chunks finish. A pool that breaks (a worker killed, e.g. by the
    out-of-memory killer) leaves its unfinished chunks to the calling process, with a warning.
    """
    import warnings
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    # Chunks small enough that the pool stays balanced and the progress bar moves, large enough
    # that pickling a chunk's paths is nothing next to decoding it.
    size = max(8, min(512, len(images) // (workers * 16) or 1))
    chunks = [[(row, str(p)) for row, p in images[k : k + size]] for k in range(0, len(images), size)]
    failed: dict[int, str] = {}
    with ProcessPoolExecutor(workers, mp_context=_context()) as pool:
        pending = {pool.submit(_decode_rows, str(path), chunk, preprocess): chunk for chunk in chunks}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    chunk = pending.pop(future)
                    try:
                        failed.update(future.result())
                    except BrokenProcessPool as exc:
                        warnings.warn(f"decode worker stopped ({exc}); decoding the rest in this process", stacklevel=2)
                        failed.update(_decode_rows(str(path), chunk, preprocess))
                    advance(len(chunk))
                if strict and failed:
                    first = min(failed)
                    return {first: failed[first]}
        finally:
            for future in pending:
                future.cancel()
    return failed


def _hash_files(paths: list[str]) -> list[str | None]:
    """In a worker: the sha256 of each file (None when unreadable)."""
    from medclip_cli.files import file_sha256

    return [file_sha256(p) for p in paths]


def hash_in_workers(paths: list[str], workers: int, *, advance) -> list[str | None]:
    """:func:`medclip_cli.files.file_sha256` of every path, in ``workers`` processes, in order.

    A first run hashes every file before anything is decoded (the hashes name the cache entry):
    one process would leave the other cores idle for a seventh of a 200k-image build. A pool that
    breaks leaves its unfinished chunks to the calling process, with a warning.
    """
    import warnings
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    size = max(16, min(1024, len(paths) // (workers * 16) or 1))
    starts = range(0, len(paths), size)
    out: list[str | None] = [None] * len(paths)
    with ProcessPoolExecutor(workers, mp_context=_context()) as pool:
        pending = {pool.submit(_hash_files, paths[k : k + size]): k for k in starts}
        for future in as_completed(pending):
            k = pending[future]
            try:
                digests = future.result()
            except BrokenProcessPool as exc:
                warnings.warn(f"hashing worker stopped ({exc}); hashing the rest in this process", stacklevel=2)
                digests = _hash_files(paths[k : k + size])
            out[k : k + len(digests)] = digests
            advance(len(digests))
    return out
