"""All terminal output: rich consoles, tables, progress bars, and JSON for scripts."""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from medclip_cli.redact import redact

MAX_MESSAGE_CHARS = 600  # a message quoting a whole file (a manifest's line, a config) is cut here

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def error(message: str) -> None:
    """One red line on stderr (line breaks in messages from other libraries are joined)."""
    err_console.print(f"[bold red]error:[/] {escape(_short(one_line(message)))}", soft_wrap=True)


def one_line(message: str) -> str:
    """``message`` on a single line: a multi-line text (pydicom, safetensors) joined with spaces."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def _short(message: str) -> str:
    """``message`` without credentials and at most :data:`MAX_MESSAGE_CHARS` long."""
    message = redact(message)
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 1] + "…"


def warning(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(_short(one_line(message)))}", soft_wrap=True)


def info(message: str) -> None:
    err_console.print(escape(redact(message)), soft_wrap=True)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout (no colour, no wrapping, no credentials)."""
    sys.stdout.write(redact(json.dumps(data, indent=2, default=str)) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, justify_numbers: bool = True) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for i, col in enumerate(columns):
        t.add_column(col, no_wrap=(i == 0))
    for row in rows:
        t.add_row(*[_cell(v) for v in row])
    return t


def _cell(value: Any) -> Any:
    if isinstance(value, Text):
        return value
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return escape(str(value))


def emphasis(value: Any) -> Text:
    """A table cell drawn in bold green (the best value of a row)."""
    text = "—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
    return Text(text, style="bold green")


def show(renderable: Any) -> None:
    console.print(renderable)


def heading(text: str) -> None:
    """A bold line on stdout, never folded by rich (a long image path stays whole above its table)."""
    console.print(Text(redact(text), style="bold"), soft_wrap=True)


def line(message: str) -> None:
    """A sentence of the results on stdout (a verdict under a table), not a log line."""
    console.print(escape(redact(message)), soft_wrap=True)


class RichProgress:
    """The engine's :class:`ProgressReporter` drawn as rich progress bars on stderr."""

    def __init__(self, progress) -> None:
        self._progress = progress

    def task(self, description: str, total: int | None = None) -> object:
        return self._progress.add_task(escape(redact(description)), total=total, status="")

    def advance(self, task: object, n: int = 1, **fields: object) -> None:
        status = "  ".join(f"{k} {_fmt(v)}" for k, v in fields.items())
        self._progress.update(task, advance=n, status=status)

    def done(self, task: object) -> None:
        self._progress.update(task, visible=True)
        self._progress.stop_task(task)

    def log(self, message: str) -> None:
        self._progress.console.print(escape(redact(message)), soft_wrap=True)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


#: Seconds between plain progress lines when stderr is not a terminal (CI logs, nohup, SLURM).
LOG_INTERVAL_ENV = "MEDCLIP_LOG_INTERVAL"
DEFAULT_LOG_INTERVAL = 30.0


class _PlainTask:
    def __init__(self, description: str, total: int | None, now: float) -> None:
        self.description, self.total = description, total
        self.done = 0
        self.fields: dict[str, object] = {}
        self.start = self.last_line = now


class PlainProgress:
    """The engine's :class:`ProgressReporter` as plain log lines, for output that is not a terminal.

    Each task logs a line when it starts (what it does, how many items), one every ``interval``
    seconds while it runs (time, stage, step/total, its fields such as loss and samples/s,
    elapsed, ETA) and one when it ends (items, fields, seconds). Rich bars would draw nothing in
    a log until the run ends.
    """

    def __init__(self, write, interval: float, clock=time.monotonic) -> None:
        self._write, self._interval, self._clock = write, interval, clock

    def task(self, description: str, total: int | None = None) -> object:
        task = _PlainTask(description, total, self._clock())
        self._write(f"{_stamp()}  {description}: start" + (f", {total} to do" if total is not None else ""))
        return task

    def advance(self, task: object, n: int = 1, **fields: object) -> None:
        assert isinstance(task, _PlainTask)
        task.done += n
        task.fields.update(fields)
        now = self._clock()
        if now - task.last_line >= self._interval:
            self._line(task, now)

    def done(self, task: object) -> None:
        assert isinstance(task, _PlainTask)
        now = self._clock()
        parts = [f"{_stamp()}  {task.description}: done", _count(task), *_field_parts(task)]
        parts.append(f"in {_duration(now - task.start)}")
        self._write("  ".join(parts))

    def log(self, message: str) -> None:
        self._write(f"{_stamp()}  {message}")

    def _line(self, task: _PlainTask, now: float) -> None:
        task.last_line = now
        elapsed = now - task.start
        parts = [f"{_stamp()}  {task.description}:", _count(task), *_field_parts(task)]
        parts.append(f"elapsed {_clock_time(elapsed)}")
        if task.total and task.done:
            parts.append(f"ETA {_clock_time(elapsed / task.done * max(task.total - task.done, 0))}")
        self._write("  ".join(parts))


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _count(task: _PlainTask) -> str:
    if task.total:
        return f"{task.done}/{task.total} ({100 * task.done / task.total:.0f}%)"
    return str(task.done)


def _field_parts(task: _PlainTask) -> list[str]:
    return [f"{k} {_fmt(v)}" for k, v in task.fields.items()]


def _duration(seconds: float) -> str:
    """``3.2 s`` under a minute, else ``0:04:05``."""
    return f"{seconds:.1f} s" if seconds < 60 else _clock_time(seconds)


def _clock_time(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _log_interval() -> float:
    raw = os.environ.get(LOG_INTERVAL_ENV, "").strip()
    try:
        return max(float(raw), 0.0) if raw else DEFAULT_LOG_INTERVAL
    except ValueError:
        return DEFAULT_LOG_INTERVAL


def _plain_line(message: str) -> None:
    sys.stderr.write(redact(message) + "\n")
    sys.stderr.flush()


@contextmanager
def progress(enabled: bool = True) -> Iterator[object]:
    """A progress reporter for the engine: rich bars on a terminal, plain lines in a log, or
    nothing when ``enabled`` is False."""
    if not enabled:
        from medclip_cli.progress import NullProgress

        yield NullProgress()
        return
    if not (err_console.is_terminal or err_console.is_jupyter):
        yield PlainProgress(_plain_line, _log_interval())
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=err_console, transient=False) as bars:
        try:
            yield RichProgress(bars)
        except BaseException:
            # A failed run ends with its one-line error alone, not below half-drawn bars.
            for task in bars.tasks:
                bars.update(task.id, visible=False)
            raise
