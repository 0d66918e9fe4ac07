"""Fixtures shared by every test: an isolated MEDCLIP_HOME, the real MedPix copy, the CLI runner."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MEDPIX_ROOT = Path(os.environ.get("MEDCLIP_TEST_MEDPIX", REPO.parent / "shared" / "medpix2"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Caches, downloads and the user config folder of a test are its own; never the user's."""
    home = tmp_path_factory.mktemp("medclip_home")
    monkeypatch.setenv("MEDCLIP_HOME", str(home))
    monkeypatch.setenv("MEDCLIP_CONFIG_DIR", str(home / "config"))  # no user's experiments or prompts
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MEDCLIP_DEBUG", raising=False)
    return home


@pytest.fixture
def medpix_root() -> Path:
    """The shared MedPix 2.0 copy (train and dev); the test is skipped where it is absent."""
    if not (MEDPIX_ROOT / "MedPix-2-0" / "splitted_dataset").is_dir():
        pytest.skip(f"MedPix 2.0 copy not found at {MEDPIX_ROOT}")
    return MEDPIX_ROOT


#: Columns of :func:`write_medpix_manifest`: none is a name the CSV reader would guess.
MANIFEST_COLUMNS = ("scan_file", "findings", "kind", "region", "subset")


def write_medpix_manifest(target: Path, per_kind: dict[str, int]) -> Path:
    """``target/pairs.csv`` over real MedPix 2.0 images, columns named as no default would guess.

    ``per_kind`` gives the rows of each split: the first that many CT and that many MR records
    (``{"train": 8, "dev": 4}``: 16 train and 8 dev rows). Image paths are relative to the file.
    """
    source = MEDPIX_ROOT / "MedPix-2-0"
    if not (source / "splitted_dataset").is_dir():
        pytest.skip(f"MedPix 2.0 copy not found at {MEDPIX_ROOT}")
    target.mkdir(parents=True, exist_ok=True)
    os.symlink(source / "images", target / "scans")
    rows = []
    for split, n in per_kind.items():
        lines = (source / "splitted_dataset" / f"descriptions_{split}.jsonl").read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        for kind in ("CT", "MR"):
            for r in [r for r in records if r["Type"] == kind][:n]:
                caption = (r.get("Description") or {}).get("Caption") or ""
                rows.append([f"scans/{r['image']}.png", caption, kind, r["Location Category"], split])
    path = target / "pairs.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(rows)
    return path


@pytest.fixture
def cli():
    """Invoke ``medclip`` in-process: ``cli("classify", ...)`` returns the click Result."""
    from typer.testing import CliRunner

    from medclip_cli.cli import app

    runner = CliRunner()

    def invoke(*args: str, **kwargs):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, **kwargs)

    return invoke


def run_medclip(*args: str, env: dict | None = None, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run ``medclip`` in a fresh process (start-up, signals, exit codes as a user sees them)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "medclip_cli.cli", *[str(a) for a in args]],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        **kwargs,
    )


#: A plain progress line (``ui.PlainProgress``: output that is not a terminal, as under CliRunner).
_PROGRESS_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  ")


def peak_rss_growth_mib(setup: str, measured: str, timeout: float = 600) -> float:
    """Run ``setup`` then ``measured`` (Python source) in a fresh process and return how far the
    peak RSS rose above the RSS after ``setup``, in MiB: a memory bound, not a timing."""
    script = (
        "def _rss(key):\n"
        "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(key)) / 1024\n"
        f"{setup}\n_before = _rss('VmRSS:')\n{measured}\nprint(_rss('VmHWM:') - _before)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.strip().splitlines()[-1])


def message_lines(stderr: str) -> list[str]:
    """The non-blank lines of ``stderr`` other than timestamped progress lines (a stage's start,
    periodic and done lines, which a log holds before any error)."""
    return [line for line in stderr.splitlines() if line.strip() and not _PROGRESS_LINE.match(line)]
