"""The text-feature cache (``--text-feature-cache``) as a progress stage of its own.

With a wholly locked text tower every caption (and label prompt) is run through it once before the
first step (:meth:`PairSet.add_text_cache`, :func:`~medclip_cli.runtime.forward.frozen_text_pooled`):
on MedPix some 15 s that a log would otherwise show as silence between the data and the first epoch.
"""

from __future__ import annotations

from medclip_cli.progress import ProgressReporter, read_from_cache
from medclip_cli.runtime.forward import reporting_text_features


def add_text_features(pairs, module, batch: int, progress: ProgressReporter, split: str) -> None:
    """``pairs.add_text_cache(module, batch)`` under one progress stage (items: texts); a single
    "read from cache" line when the features were not computed here."""
    n_labels = len(pairs.label_tokens) if pairs.label_tokens is not None else 0
    what = f"text features of {len(pairs.tokens)} {split} captions"
    if n_labels:
        what += f" and {n_labels} label prompt{'s' if n_labels > 1 else ''}"
    what += " (locked text tower)"
    bar = None

    def report(n: int) -> None:
        nonlocal bar
        if bar is None:  # opened on the first batch, so features found elsewhere draw no empty bar
            bar = progress.task(what, total=len(pairs.tokens) + n_labels)
        if n:
            progress.advance(bar, n)

    with reporting_text_features(report):
        pairs.add_text_cache(module, batch)
    if bar is not None:
        progress.done(bar)
    else:
        read_from_cache(progress, what)
