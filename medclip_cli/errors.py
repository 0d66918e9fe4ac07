"""The error types the engine raises; the CLI prints them as one line."""

from __future__ import annotations


class MedclipError(Exception):
    """A problem the user can act on. ``str()`` is the one-line message shown."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(MedclipError):
    """A bad option value or combination; exit code 2 like Typer's own usage errors."""

    exit_code = 2


class PluginError(MedclipError):
    """A plugin failed to load or registered something invalid."""


class EncoderNotFoundError(UsageError):
    """An encoder name that no plugin registered."""


class ModelError(MedclipError):
    """A model bundle or weights file that cannot be used."""


class PretrainedUnavailableError(ModelError):
    """Pretrained weights that are neither cached nor downloadable right now."""


class ImageError(MedclipError):
    """An image file that cannot be read or decoded."""


class DataError(MedclipError):
    """A data set (manifest, split, columns, labels) that cannot be used."""


class DataNotDownloadedError(DataError):
    """A built-in data set that is neither downloaded nor given with --data (a download fixes it)."""


class TrainingError(MedclipError):
    """Training stopped (non-finite loss, nothing to resume, ...)."""


class OutputError(MedclipError):
    """An output location that cannot be written."""
