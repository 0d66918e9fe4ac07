"""The bad-input table (tests/reliability/cases.py) run in-process, one test per row."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.conftest import message_lines
from tests.reliability.cases import CASES, Env


def _snapshot(root: Path) -> dict[str, str]:
    """Every file below ``root`` with a digest of its content (links are not followed)."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            files[str(path.relative_to(root))] = "link:" + str(path.readlink())
        elif path.is_file():
            files[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def _one_line(stderr: str) -> str:
    lines = message_lines(stderr)  # progress lines a log holds before the error do not count
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    return lines[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, cli, tmp_path, monkeypatch, archive_server, bundles, fresh_plugins):
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    args = case.build(Env(case_dir, monkeypatch, archive_server, bundles))
    before = _snapshot(case_dir)

    result = cli(*args)

    assert result.exit_code == case.exit_code, result.output
    assert "Traceback" not in result.output
    assert not (case_dir / "pwned").exists(), "a file read by the command ran code"
    after = _snapshot(case_dir)
    changed = sorted(name for name, digest in before.items() if after.get(name) != digest)
    assert not changed, f"inputs or earlier outputs changed: {changed}"
    if case.exit_code == 0:
        assert case.message in result.output
        return
    new = sorted(set(after) - set(before))
    assert not new, f"a failed command left files behind: {new}"
    if case.output is not None:  # the refused run's output folder holds nothing (not even hidden temp files)
        output = case_dir / case.output
        assert not output.exists() or not any(p.is_file() or p.is_symlink() for p in output.rglob("*"))
    if result.stderr.startswith("Usage:"):  # Typer's own parsing errors: usage, hint, boxed message
        assert case.exit_code == 2
        assert any(case.message in line for line in result.stderr.splitlines()), result.stderr
        return
    if case.report:  # every problem on its own line; the one asked about among them
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert any(case.message in line for line in errors), result.stderr
        return
    line = _one_line(result.stderr)
    assert line.startswith("error: ")
    assert case.message in line, line
