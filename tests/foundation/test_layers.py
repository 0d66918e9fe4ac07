"""The layers hold: the import-linter contracts in pyproject.toml, checked on every test run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO

pytest.importorskip("importlinter", reason="import-linter is in the [dev] extra")

_LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with the contracts of ``cwd``'s pyproject.toml, on the package found there."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([sys.executable, "-c", _LINT], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_medclip_keeps_its_layers_and_has_no_import_cycles():
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout  # every contract was read and checked


def test_an_import_under_type_checking_breaks_the_layers(tmp_path):
    """The contracts count imports under ``TYPE_CHECKING`` like any other (grimp's default)."""
    package = tmp_path / "layered"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "high.py").write_text("from layered import low\n")
    (package / "low.py").write_text(
        textwrap.dedent(
            """
            from typing import TYPE_CHECKING

            if TYPE_CHECKING:
                from layered import high
            """
        )
    )
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [tool.importlinter]
            root_package = "layered"

            [[tool.importlinter.contracts]]
            name = "high over low"
            type = "layers"
            containers = ["layered"]
            layers = ["high", "low"]
            """
        )
    )
    result = _lint(tmp_path)
    assert result.returncode == 1
    assert "layered.low -> layered.high" in result.stdout
