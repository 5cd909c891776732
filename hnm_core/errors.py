"""Typed errors. Every message is one line that says what is wrong, where, and how to fix it."""

from __future__ import annotations

from pathlib import Path


class HnmError(Exception):
    """Base class for every error hnm raises on purpose (pages and the CLI catch this, not Exception)."""


class DataError(HnmError):
    """Bad input data: names the file, the line (when there is one) and the fix."""

    def __init__(self, path: str | Path, message: str, *, line: int | None = None, fix: str | None = None):
        self.path = str(path)
        self.line = line
        self.reason = message
        self.fix = fix
        where = f"{self.path}:{line}" if line is not None else self.path
        text = f"{where}: {message}"
        if fix:
            text = text.rstrip() + ("" if text.rstrip().endswith((".", "!", "?", ":")) else ".") + f" Fix: {fix}"
        super().__init__(text)


class ModelLoadError(HnmError):
    """A model (bi-encoder or cross-encoder) could not be loaded."""


class SettingsError(HnmError):
    """A setting has a value outside what it accepts."""


class ModelOutputError(HnmError):
    """A model produced values hnm cannot use (NaN or infinite embeddings or scores); nothing of them is cached."""


class HnmWarning(UserWarning):
    """Base class of the warnings hnm gives on purpose (the CLI prints them as one line)."""


class CacheWarning(HnmWarning):
    """A cache file failed its check (checksum, shape or dtype) and is recomputed instead of used."""


class DiskFullError(HnmError):
    """A write ran out of disk space: names the folder and what was kept intact (a half-written file is removed)."""


class ExportError(HnmError):
    """An export could not be written (for example the target exists and overwrite was not asked for)."""

