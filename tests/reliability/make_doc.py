"""Render docs/RELIABILITY.md from the case table, after running the reliability suite.

    python -m tests.reliability.make_doc          # runs tests/reliability, then writes the file

The table comes from ``tests/reliability/cases.py`` and the pass count from the run; the test
``test_doc.py`` fails when the file no longer matches the table.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from tests.reliability import test_faults, test_fuzz, test_hostile, test_real_process, test_shard_hostile
from tests.reliability.cases import AREAS, CASES, Case

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "RELIABILITY.md"

_INTRO = """\
# Reliability: bad inputs and faults

A researcher's overnight run must not die on one bad file, and nothing medclip reads from a file or
the network may run code or write outside its output. This page is generated from the suite in
`tests/reliability/` by `python -m tests.reliability.make_doc`; do not edit it by hand
(`tests/reliability/test_doc.py` fails when it is out of date).

**{passed} of {total} bad-input cases pass**, plus {faults} fault tests, {hostile} hostile-input tests beyond the
table and {fuzz} property-based fuzz tests.

Every case runs the real command in-process (`typer.testing.CliRunner`) on an input built in its own
folder, and checks:

- the exit code: 1 for a refused input, 2 for a usage error, 0 where the input is accepted or the
  bad item is skipped (then the report names it);
- refused inputs print exactly one line on stderr, `error: ...`, naming the offending file, line or
  option (Typer's own usage errors keep Typer's usage box); "reported" cases are the commands whose
  job is to list every problem (`data check`, several images) and print one `error:` line each;
- no traceback (`MEDCLIP_DEBUG=1` shows one on purpose);
- a failed command leaves no file behind (no partial output, no temporary file), and every file
  that was there before (inputs, earlier runs' outputs) is byte-for-byte unchanged;
- a file whose pickle would run code never does (the case checks that its marker file is absent).
"""

_HOSTILE = """\
Issue 17 tried 129 hostile inputs from outside; the classes of failure they showed are fixed at
their root, and their cases are rows above (`tests/reliability/cases_hostile.py`) or tests here:

- only regular files are read: a FIFO, a device, a socket or a `/proc` file behind any image,
  manifest, label, prompt or config path is refused before it is opened (`medclip_cli/files.py`);
- an image's header decides before decoding: pixels, aspect ratio, DICOM frames and decoded bytes
  have limits (`medclip --max-image-pixels/--max-image-aspect/--max-image-frames/--max-image-bytes`,
  or `MEDCLIP_MAX_IMAGE_*`), the same in `data check` and every command; a deflated DICOM's header
  is read from a bounded prefix;
- nothing medclip did not write is deleted: `data download --force` replaces only a folder with
  medclip's own download record, `evaluate --output` refuses a folder holding other files;
- one process per output folder: `finetune`, `evaluate --output` and `reproduce` hold an OS lock
  (`flock` on `.medclip-lock`, freed by the kernel when the holder dies) and a second process is
  refused naming the holder; `reproduce` builds beside a finished experiment and swaps it in;
- credentials in URLs are masked in every line medclip prints and every record it writes
  (`medclip_cli/redact.py`); no message quotes more than a short excerpt;
- manifests written by `csv`, `json` and pandas are read back whatever their captions contain,
  with the same limits for CSV and JSON lines;
- resume checks what it loads; a run that died before its first checkpoint is started again by
  the same command; a bundle carries a checksum of its weights, and NaN weights or a zero std are
  refused by name; plugins that exit, raise `KeyboardInterrupt` or print are that plugin's failure;
- WebDataset shards are read by one member reader on the cached and the streamed path
  (`medclip_cli/data/tar_members.py`): a link, device, FIFO, `..` or absolute member, or one over
  `--max-image-bytes` or the caption limit, skips its sample with the same line on both; nothing is
  ever written under a member's name.
"""

_HOW_TO_ADD = """\
## How to add a case

1. Add a `Case(...)` row to `CASES` in `tests/reliability/cases.py`: an `id`, its area (one of
   {areas}), the input in words, the command as a user would type it, a `build(env)` function that
   writes the input under `env.tmp` (helpers in `tests/reliability/inputs.py`) and returns the
   command line, the exit code, and a substring of the message (for refused inputs: the part that
   names the file, line or option). Set `report=True` for commands that list every problem, and
   `output=` for an output folder that must stay empty.
2. Run `pytest tests/reliability -q`. When the case fails because medclip shows a traceback, the
   wrong exit code or several lines, fix medclip (raise a `MedclipError` subclass where the problem
   is found), not the case.
3. Run `python -m tests.reliability.make_doc` and commit docs/RELIABILITY.md with the case.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _tests_of(module) -> list[tuple[str, str]]:
    found = []
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if name.startswith("test_") and fn.__module__ == module.__name__:
            found.append((name, inspect.getsourcelines(fn)[1]))
    return [name for name, _ in sorted(found, key=lambda item: item[1])]


def render(cases: list[Case], passed: set[str]) -> str:
    faults, fuzz = _tests_of(test_faults), _tests_of(test_fuzz)
    hostile = _tests_of(test_hostile) + _tests_of(test_shard_hostile)
    parts = [_INTRO.format(passed=sum(c.id in passed for c in cases), total=len(cases), faults=len(faults),
                           hostile=len(hostile), fuzz=len(fuzz))]
    for area in AREAS:
        rows = [c for c in cases if c.area == area]
        parts.append(f"## {area[0].upper()}{area[1:]} ({len(rows)} cases)\n")
        parts.append("| case | input | command | outcome | message contains | result |")
        parts.append("|---|---|---|---|---|---|")
        for c in rows:
            result = "pass" if c.id in passed else "**FAIL**"
            parts.append(
                f"| `{c.id}` | {_cell(c.input)} | `medclip {_cell(c.command)}` | {c.outcome} | "
                f"`{_cell(c.message)}` | {result} |"
            )
        parts.append("")
    parts.append("## Faults during training (tests/reliability/test_faults.py)\n")
    parts.extend(f"- `{name}`" for name in faults)
    parts.append(
        "- Ctrl-C (SIGINT saves a checkpoint, exits 130 and prints the resume command), SIGKILL between "
        "checkpoints then an exact resume, and a non-finite loss: `tests/training/test_resume.py`\n"
    )
    parts.append("## Hostile inputs beyond the table (tests/reliability/test_hostile.py)\n")
    parts.append(_HOSTILE)
    parts.extend(f"- `{name}`" for name in _tests_of(test_hostile))
    parts.append("")
    parts.append("Hostile WebDataset shards beyond the table (tests/reliability/test_shard_hostile.py):\n")
    parts.extend(f"- `{name}`" for name in _tests_of(test_shard_hostile))
    parts.append("")
    parts.append("## In a real process (tests/reliability/test_real_process.py)\n")
    parts.extend(f"- `{name}`" for name in _tests_of(test_real_process))
    parts.append("- `MEDCLIP_DEBUG=1` shows the traceback: `tests/foundation/test_cli.py`\n")
    parts.append("## Property-based fuzzing (tests/reliability/test_fuzz.py, hypothesis)\n")
    parts.append("No input makes these raise anything but a `MedclipError`:\n")
    parts.extend(f"- `{name}`" for name in fuzz)
    parts.append("")
    parts.append(_HOW_TO_ADD.format(areas=", ".join(AREAS)))
    return "\n".join(parts)


class _Collect:
    def __init__(self) -> None:
        self.passed: set[str] = set()

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call" and report.passed and "test_bad_input[" in report.nodeid:
            self.passed.add(report.nodeid.split("test_bad_input[", 1)[1].rstrip("]"))


def main() -> int:
    import pytest

    collect = _Collect()
    here = Path(__file__).parent
    code = pytest.main(["-q", str(here), f"--ignore={here / 'test_doc.py'}"], plugins=[collect])
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render(CASES, collect.passed), encoding="utf-8")
    print(f"wrote {DOC}: {len(collect.passed)} of {len(CASES)} cases pass")
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
