"""``evaluate --output``: the files of one evaluation, and a folder that holds exactly one run.

The new files are written into a temporary folder inside ``--output`` first; only when all of
them are complete are the earlier evaluation's files taken away (``results.json`` first, so a
folder without it is recognisably unfinished) and the new ones moved in (``results.json`` last).
A folder holding files ``evaluate`` does not write is refused before any image is embedded, so
nothing of the user's is ever deleted. Each task and model gets its own file name even when two
names reduce to the same characters (``Modalität`` and ``Modalitàt``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from medclip_cli.atomic import write_text_atomic
from medclip_cli.errors import OutputError
from medclip_cli.evaluation.metrics import save_confusion_png
from medclip_cli.runlock import LOCK_NAME

RESULTS = "results.json"
_OWN = re.compile(r"(results(_findings)?\.json|predictions_.+\.csv|(confusion|reliability)_.+\.png)")


def _foreign(output: Path, own: re.Pattern) -> list[str]:
    """Names in ``output`` that the command (whose file names ``own`` matches) does not write."""
    return sorted(p.name for p in output.iterdir() if p.name != LOCK_NAME and not _is_own(p, own))


def _is_own(path: Path, own: re.Pattern = _OWN) -> bool:
    return (path.is_file() and not path.is_symlink() and bool(own.fullmatch(path.name))) or (
        path.is_dir() and path.name.startswith(".evaluate-new-")
    )


def check_output(output: str | Path, command: str = "evaluate", own: re.Pattern = _OWN) -> None:
    """Refuse an ``--output`` that cannot be written before any image is embedded (creates nothing):
    one that is not a writable folder, or one holding files other than ``command``'s own (``own``)."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise OutputError(f"--output {output}: exists and is not a folder", hint="choose another --output")
    existing = output
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise OutputError(
            f"--output {output}: cannot create the folder ({existing} is not a writable folder)",
            hint="choose another --output",
        )
    if output.is_dir():
        foreign = _foreign(output, own)
        if foreign:
            raise OutputError(
                f"--output {output}: holds files {command} did not write ({', '.join(foreign[:3])}"
                + (", …" if len(foreign) > 3 else "") + "); a results folder holds one run",
                hint="choose a new or empty --output",
            )


def unique_names(texts: list[str]) -> dict[str, str]:
    """A file-name part per text: its slug, plus a short digest where two texts share a slug."""
    slugs = {t: _slug(t) for t in texts}
    counts: dict[str, int] = {}
    for slug in slugs.values():
        counts[slug.lower()] = counts.get(slug.lower(), 0) + 1
    return {
        t: slug if counts[slug.lower()] == 1 else f"{slug}-{hashlib.sha256(t.encode()).hexdigest()[:8]}"
        for t, slug in slugs.items()
    }


def write_outputs(result, output: str | Path) -> list[Path]:
    """``results.json``, ``predictions_<task>.csv``, ``confusion_<task>.png`` (and, when calibrated,
    ``reliability_<task>.png``) under ``output``, replacing an earlier evaluation's files as a whole. With several models the CSVs get a
    ``model`` column and the pictures the model's label in their name."""
    output = Path(output)
    check_output(output)
    try:
        output.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".evaluate-new-", dir=output))
    except OSError as exc:
        raise OutputError(f"--output {output}: cannot create the folder ({exc.strerror or exc})") from exc
    try:
        names = _write_all(result, staging)
        for old in sorted(output.iterdir(), key=lambda p: p.name != RESULTS):  # results.json goes first
            if old.name != LOCK_NAME and old != staging and _is_own(old):
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        for name in sorted(names, key=lambda n: n == RESULTS):  # results.json arrives last
            os.replace(staging / name, output / name)
    except OSError as exc:
        raise OutputError(f"--output {output}: writing the results failed ({exc.strerror or exc})") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [output / name for name in names]


def _write_all(result, folder: Path) -> list[str]:
    several = len(result.models) > 1
    tasks = unique_names(list(result.tasks))
    models = unique_names([m.label for m in result.models])
    written = [write_file(folder / RESULTS, json.dumps(result.to_json(), indent=2, default=str) + "\n")]
    for task in result.tasks:
        rows = [{"model": m.label, **row} if several else row for m in result.models for row in m.tasks[task].rows]
        written.append(write_file(folder / f"predictions_{tasks[task]}.csv", csv_text(rows)))
        for m in result.models:
            t = m.tasks[task]
            if t.kind != "classification":
                continue
            name = f"confusion_{tasks[task]}" + (f"_{models[m.label]}" if several else "") + ".png"
            title = f"{task} — {m.label}" if several else task
            written.append(save_confusion_png(t.metrics["confusion_matrix"], t.classes, folder / name, title))
            if t.calibration is not None:
                from medclip_cli.evaluation.calibration import save_reliability_png

                picture = folder / name.replace("confusion_", "reliability_", 1)
                temperature = t.calibration["temperature"]
                written.append(save_reliability_png(t.arrays["logits"], t.arrays["y_true"], temperature, picture, title))
    return [p.name for p in written]


def csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def write_file(path: Path, text: str) -> Path:
    try:
        return write_text_atomic(path, text)
    except OSError as exc:
        raise OutputError(f"{path}: writing failed ({exc.strerror or exc})") from exc


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"
