"""The errors a user can fix: the CLI prints them as one line instead of a traceback.

A leaf: it imports nothing from csdseg, so every module may raise these without an import
cycle. The modules they belong to re-export them (``csdseg.config.ConfigError``,
``csdseg.data.source.DataError``, ``csdseg.files.atomic.WriteError``,
``csdseg.runs.MissingInputError``); the errors of one module only (``RunLockedError``,
``CamFileError``, ``LabelFileError``) subclass these where they are raised.
"""
from __future__ import annotations

import os


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message says which and how to fix it."""


class DataError(ValueError):
    """A dataset file is missing or malformed; the message names the file and the fix."""


class MissingInputError(FileNotFoundError):
    """A stage's input is absent; the message names it and the command that makes it."""


class StageError(RuntimeError):
    """A stage cannot go on (bad checkpoint, diverged training...); the message says why."""


class WriteError(OSError):
    """A write failed for a reason the user fixes (disk full, read-only or forbidden folder).

    ``str(exc)`` is the whole one-line message (the CLI prints it after ``error:``); ``errno``,
    ``strerror`` and ``filename`` are set as for any OSError, so ``except OSError`` still works.
    The message is made by the writer that failed (csdseg/files/atomic.py).
    """

    def __init__(self, message: str, errno_: int | None = None,
                 filename: str | None = None) -> None:
        super().__init__(message)
        self.errno = errno_
        self.strerror = os.strerror(errno_) if errno_ is not None else None
        self.filename = filename

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self):  # crosses worker processes intact
        return type(self), (str(self), self.errno, self.filename)


# WriteError (disk full, read-only or forbidden folder) before the CLI's generic OSError
# branch; RunLockedError (csdseg/runs/lock.py) is a StageError.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, DataError, MissingInputError, StageError, WriteError, PermissionError,
)
