"""How the engine reports progress without knowing who draws it (rich bars, tests, nothing)."""

from __future__ import annotations

from typing import Protocol


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
