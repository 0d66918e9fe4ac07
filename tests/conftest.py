"""Fixtures shared by every test: an isolated MEDCLIP_HOME, the real MedPix copy, the CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MEDPIX_ROOT = Path(os.environ.get("MEDCLIP_TEST_MEDPIX", REPO.parent / "shared" / "medpix2"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Caches and downloads of a test go to its own folder; never to the user's."""
    home = tmp_path_factory.mktemp("medclip_home")
    monkeypatch.setenv("MEDCLIP_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MEDCLIP_DEBUG", raising=False)
    return home


@pytest.fixture
def medpix_root() -> Path:
    """The shared MedPix 2.0 copy (train and dev); the test is skipped where it is absent."""
    if not (MEDPIX_ROOT / "MedPix-2-0" / "splitted_dataset").is_dir():
        pytest.skip(f"MedPix 2.0 copy not found at {MEDPIX_ROOT}")
    return MEDPIX_ROOT


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
