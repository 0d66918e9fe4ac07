"""Multi-label findings: several yes/no findings per image (CheXpert, MIMIC-CXR, PadChest, OpenI).

A data set exposes a multi-label field as a :class:`FindingsField` in ``Dataset.multilabel_fields``:
the field names its findings and, for each, the key of ``Sample.labels`` that holds the raw value
of that finding for an image (a missing key is "blank": not mentioned). How a raw value reads is
the field's convention:

- ``chexpert``: ``1`` positive, ``0`` negative, ``-1`` uncertain, blank unmentioned (CheXpert,
  MIMIC-CXR's CheXpert labeller; ``1.0``/``-1.0`` as pandas writes them are accepted);
- ``binary``: ``1`` positive, ``0`` negative (also true/false, yes/no), blank unmentioned.

Uncertain values are resolved by a named policy from the CheXpert paper (Irvin et al. 2019):
``ignore`` (U-Ignore: left out of that finding's metrics and loss), ``positive`` (U-Ones) or
``negative`` (U-Zeros). Blank values are read as negative by default (as CheXpert's and CheXzero's
evaluations do) or left out with ``blank="ignore"``.

A format plugin provides a field by putting each finding's raw value in ``Sample.labels`` (under a
key of its choosing, e.g. ``"finding:Cardiomegaly"``) and setting
``dataset.multilabel_fields["findings"] = FindingsField("findings", names, keys)``; a data set with
a list of terms per image (OpenI's MeSH terms) writes ``"1"`` for each term an image has and leaves
the others blank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from medclip_cli.errors import DataError, UsageError

POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1
CONVENTIONS = ("chexpert", "binary")
#: Uncertain-label policies, with the CheXpert paper's names as aliases.
UNCERTAIN_POLICIES = {
    "ignore": "ignore", "u-ignore": "ignore",
    "positive": "positive", "as-positive": "positive", "u-ones": "positive",
    "negative": "negative", "as-negative": "negative", "u-zeros": "negative",
}
BLANK_POLICIES = ("negative", "ignore")
DEFAULT_FIELD = "findings"

_TRUE = {"1", "1.0", "true", "yes", "y", "t", "positive", "pos"}
_FALSE = {"0", "0.0", "false", "no", "n", "f", "negative", "neg"}
_UNCERTAIN = {"-1", "-1.0", "uncertain", "u"}


@dataclass(frozen=True)
class FindingsField:
    """One multi-label field: its findings, where each finding's raw value lives, how values read."""

    name: str
    findings: tuple[str, ...]  # readable names, put into the prompts
    keys: tuple[str, ...]  # the Sample.labels key holding each finding's raw value
    convention: str = "chexpert"

    def __post_init__(self) -> None:
        if len(self.findings) != len(self.keys):
            raise ValueError("a FindingsField needs one key per finding")
        if self.convention not in CONVENTIONS:
            raise UsageError(f"unknown findings convention {self.convention!r} (known: {', '.join(CONVENTIONS)})")


def uncertain_policy(name: str) -> str:
    """The canonical policy for ``--uncertain`` (ignore, positive, negative; U-Ones etc. accepted)."""
    policy = UNCERTAIN_POLICIES.get(str(name).strip().lower())
    if policy is None:
        raise UsageError(
            f"--uncertain {name!r}: unknown policy",
            hint="use ignore (U-Ignore), as-positive (U-Ones) or as-negative (U-Zeros)",
        )
    return policy


def read_value(raw: str | None, convention: str = "chexpert") -> int | None:
    """The raw value as POSITIVE, NEGATIVE, UNCERTAIN, or None for blank; ValueError if unreadable."""
    if raw is None:
        return None
    text = str(raw).strip().lower()
    if text in ("", "nan", "none", "null"):
        return None
    if text in _TRUE:
        return POSITIVE
    if text in _FALSE:
        return NEGATIVE
    if text in _UNCERTAIN and convention == "chexpert":
        return UNCERTAIN
    raise ValueError(text)


def resolve(value: int | None, uncertain: str = "ignore", blank: str = "negative") -> int | None:
    """A read value after the policies: 1, 0, or None (left out)."""
    if value is None:
        return NEGATIVE if blank == "negative" else None
    if value == UNCERTAIN:
        return {"ignore": None, "positive": POSITIVE, "negative": NEGATIVE}[uncertain]
    return value


def label_matrix(dataset, field: FindingsField, indices: Sequence[int], *, uncertain: str = "ignore", blank: str = "negative"):
    """``(y, mask)``: float arrays ``[len(indices), n_findings]``; ``mask`` is 0 where a label is left out."""
    samples = [dataset.samples[i] for i in indices]
    return labels_matrix([s.labels for s in samples], field, [s.id for s in samples], dataset.root, uncertain=uncertain, blank=blank)


def labels_matrix(labels: Sequence[dict], field: FindingsField, ids: Sequence[str], where, *, uncertain: str = "ignore", blank: str = "negative"):
    """:func:`label_matrix` from each image's ``Sample.labels`` (``ids`` and ``where`` name a bad value)."""
    import numpy as np

    uncertain = uncertain_policy(uncertain)
    if blank not in BLANK_POLICIES:
        raise UsageError(f"blank policy {blank!r}: use one of {', '.join(BLANK_POLICIES)}")
    y = np.zeros((len(labels), len(field.keys)), dtype=np.float64)
    mask = np.zeros_like(y)
    for row, values in enumerate(labels):
        for col, key in enumerate(field.keys):
            raw = values.get(key)
            try:
                value = resolve(read_value(raw, field.convention), uncertain, blank)
            except ValueError:
                allowed = "1, 0, -1 or blank" if field.convention == "chexpert" else "1, 0 or blank"
                raise DataError(
                    f"{where}: image {ids[row]!r}, finding {field.findings[col]!r}: value {raw!r} is not {allowed}",
                    hint="fix the manifest, or leave the finding out of --finding-columns",
                ) from None
            if value is not None:
                y[row, col] = value
                mask[row, col] = 1.0
    return y, mask


def findings_field(dataset, name: str | None = None) -> FindingsField:
    """The data set's multi-label field ``name`` (the only one when not named)."""
    fields = getattr(dataset, "multilabel_fields", {}) or {}
    if not fields:
        raise UsageError(
            f"{dataset.root}: this data set has no multi-label findings",
            hint="name the finding columns with --finding-columns A,B,C (CSV/JSONL manifests)",
        )
    if name is None:
        return next(iter(fields.values()))
    if name not in fields:
        raise UsageError(f"unknown findings field {name!r} (known: {', '.join(fields)})")
    return fields[name]
