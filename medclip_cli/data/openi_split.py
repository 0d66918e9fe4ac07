"""OpenI's train/dev/test split, by report, kept in a manifest beside the data.

No split is published, so medclip makes one: the report files are ordered by
``sha256("<seed>:<file name>")`` and the first 80 % are train, the next 10 % dev, the rest test.
A study's frontal and lateral images come from one report, so they always share a split. The
order depends only on the file names and the seed, so every machine computes the same split;
the manifest (``medclip-openi.json`` in the data set's folder) also records it, with the report
counts of the MeSH findings (which fix the ``finding`` classes), so a copy that later gains or
loses files keeps the split and classes it had.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from medclip_cli.errors import DataError

MANIFEST_NAME = "medclip-openi.json"
MANIFEST_VERSION = 1
SPLIT_SEED = 0
SPLITS = ("train", "dev", "test")
FRACTIONS = (0.8, 0.1, 0.1)
RULE = (
    "report files ordered by sha256('<seed>:<file name>'); the first 80% train, the next 10% dev, "
    "the rest test (sizes rounded to the nearest report)"
)


@dataclass(frozen=True)
class Manifest:
    """The split of every report file, and how many reports name each MeSH finding."""

    split_of: dict[str, str]  # report file name -> train/dev/test
    finding_counts: dict[str, int]  # finding (as first spelled) -> reports naming it
    single_counts: dict[str, int]  # finding -> reports naming it and no other finding
    seed: int = SPLIT_SEED
    path: Path | None = None  # where it was read from or written to; None: in memory only

    def reports(self, split: str) -> list[str]:
        return [f for f, s in self.split_of.items() if s == split]

    def most_frequent(self, n: int) -> list[str]:
        """The ``n`` findings that are the only finding of most reports (ties by name)."""
        return list(_ranked(self.single_counts))[:n]

    def as_json(self) -> dict:
        return {
            "format": "openi",
            "version": MANIFEST_VERSION,
            "split": {
                "seed": self.seed,
                "fractions": dict(zip(SPLITS, FRACTIONS)),
                "rule": RULE,
                "reports": {s: self.reports(s) for s in SPLITS},
            },
            "finding_counts": _ranked(self.finding_counts),
            "single_finding_counts": _ranked(self.single_counts),
        }


def _ranked(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0].casefold())))


def assign_splits(files: Iterable[str], seed: int = SPLIT_SEED) -> dict[str, str]:
    """The split of each report file (see the module docstring for the rule)."""
    ordered = sorted(set(files), key=lambda name: (hashlib.sha256(f"{seed}:{name}".encode()).hexdigest(), name))
    n = len(ordered)
    n_train = round(n * FRACTIONS[0])
    n_dev = round(n * FRACTIONS[1])
    split_of = {}
    for position, name in enumerate(ordered):
        split_of[name] = "train" if position < n_train else "dev" if position < n_train + n_dev else "test"
    return dict(sorted(split_of.items(), key=lambda item: report_order(item[0])))


def report_order(name: str) -> tuple:
    """Natural order of report files: ``2.xml`` before ``10.xml``."""
    stem = Path(name).stem
    return (0, int(stem), name) if stem.isdigit() else (1, 0, name)


def count_findings(heads_per_report: Iterable[tuple[str, ...]]) -> dict[str, int]:
    """Reports naming each finding, case-insensitively (spelled as it first appears)."""
    spelling: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for heads in heads_per_report:
        for head in heads:
            key = head.casefold()
            spelling.setdefault(key, head)
            counts[key] += 1
    return {spelling[k]: n for k, n in counts.items()}


def read_manifest(root: Path) -> Manifest | None:
    """The manifest in ``root``, None when there is none; a damaged one is a :class:`DataError`."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        return None
    hint = f"delete {MANIFEST_NAME}: medclip writes it again, with the same split for the same report files"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DataError(f"{path}: not a readable medclip manifest ({type(exc).__name__})", hint=hint) from exc
    try:
        if data.get("format") != "openi" or data.get("version") != MANIFEST_VERSION:
            raise ValueError("not an OpenI manifest of version 1")
        split = data["split"]
        split_of = {}
        for name in SPLITS:
            for report in split["reports"][name]:
                if not isinstance(report, str) or report in split_of:
                    raise ValueError(f"report {report!r} listed twice or not a name")
                split_of[report] = name
        counts = {str(k): int(v) for k, v in data["finding_counts"].items()}
        single = {str(k): int(v) for k, v in data["single_finding_counts"].items()}
        seed = int(split["seed"])
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: not a valid OpenI manifest ({exc})", hint=hint) from exc
    split_of = dict(sorted(split_of.items(), key=lambda item: report_order(item[0])))
    return Manifest(split_of, counts, single, seed, path)


def write_manifest(root: Path, manifest: Manifest) -> Manifest:
    """Write ``manifest`` into ``root`` (atomically); a read-only folder keeps it in memory."""
    from medclip_cli.atomic import write_text_atomic

    path = root / MANIFEST_NAME
    try:
        write_text_atomic(path, json.dumps(manifest.as_json(), indent=1) + "\n")
    except OSError:
        return manifest  # e.g. a shared read-only copy: the split is recomputed identically each time
    return Manifest(manifest.split_of, manifest.finding_counts, manifest.single_counts, manifest.seed, path)
