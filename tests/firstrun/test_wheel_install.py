"""An installed wheel (no editable link, no checkout) carries configs/ and runs from anywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.evaluation.conftest import write_medpix

SOURCES = ("pyproject.toml", "setup.py", "README.md", "medclip_cli", "configs")


def _run(args, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed; heavy dependencies come from this one."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"  # a copy, so the build's own folders never land in the checkout
    source.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}))
    _run([sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--no-build-isolation", "-w", work / "dist"], cwd=work)
    (wheel,) = (work / "dist").glob("medclip_cli-*.whl")
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # torch and friends (5 GB) from this interpreter's site-packages, after the venv's own: a plain
    # path line, so the editable install's import hook in there is never run.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel])
    return venv


def _medclip(venv: Path, *args, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return _run([venv / "bin" / "medclip", *args], cwd=cwd, env=env)


@pytest.mark.slow
def test_wheel_carries_configs_and_runs_outside_the_checkout(installed, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = _run([installed / "bin" / "python", "-c", "import medclip_cli, os; print(os.path.dirname(medclip_cli.__file__))"],
                 cwd=outside, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(installed), where  # the installed copy, not the checkout

    listed = json.loads(_medclip(installed, "reproduce", "--list", "--json", cwd=outside).stdout)
    shipped = sorted(p.stem for p in (REPO / "configs" / "experiments").glob("*.toml") if p.stem != "aliases")
    assert sorted(r["name"] for r in listed) == shipped
    assert {r["from"] for r in listed} == {"built-in"}

    records = [{"image": f"{i}_img", "modality": "CT" if i % 2 else "MR", "caption": f"scan {i}"} for i in range(6)]
    data = write_medpix(tmp_path / "data", "test", records)
    out = outside / "out"
    _medclip(installed, "evaluate", "--data", data, "--split", "test", "--task", "modality", "--encoder", "test-vit",
             "--device", "cpu", "--output", out, "--json", cwd=outside)  # fmt: skip
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    modality = results["models"][0]["tasks"]["modality"]
    assert modality["classes"] == ["CT", "MR"] and modality["n_images"] == 6
    assert modality["prompts"]["CT"] == ["Medical image of computed tomography"]  # seed set + medpix2 label names
