"""How the engine reports progress without knowing who draws it (rich bars, tests, nothing)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Protocol


class ProgressReporter(Protocol):
    """Progress callbacks. ``task`` opens a bar; ``advance`` moves it; ``log`` prints a line."""

    def task(self, description: str, total: int | None = None) -> object: ...

    def advance(self, task: object, n: int = 1, **fields: object) -> None: ...

    def done(self, task: object) -> None: ...

    def log(self, message: str) -> None: ...


class NullProgress:
    """Reports nothing (library use and tests)."""

    def task(self, description: str, total: int | None = None) -> object:
        return None

    def advance(self, task: object, n: int = 1, **fields: object) -> None:
        pass

    def done(self, task: object) -> None:
        pass

    def log(self, message: str) -> None:
        pass


def stage(action: str, model: str | None = None) -> str:
    """A stage's description: ``action`` and the model it runs (the results tables' short name),
    so a log of several models (``--model a --model b``, a reproduce comparison) tells which
    stage is whose: ``embedding 100 dev images (test-vit/none)``."""
    return f"{action} ({model})" if model else action


def read_from_cache(progress: ProgressReporter, description: str) -> None:
    """The one line of a stage whose result came from a cache instead of being computed."""
    progress.log(f"{description}: read from cache")


@contextmanager
def loading_model(progress: ProgressReporter | None, name: str) -> Iterator[None]:
    """Loading model ``name`` (big weights, a download: seconds) as a stage of one item: in a log
    its start and done lines with the seconds; on a terminal a bar that a failure hides."""
    progress = progress or NullProgress()
    task = progress.task(f"loading model {name}", total=1)
    yield
    progress.advance(task)
    progress.done(task)
