"""The errors a user can fix: the CLI prints them as one line instead of a traceback."""
from __future__ import annotations

from csdseg.config import ConfigError
from csdseg.data.source import DataError
from csdseg.io import WriteError
from csdseg.runs import MissingInputError


class StageError(RuntimeError):
    """A stage cannot go on (bad checkpoint, diverged training...); the message says why."""


# WriteError (disk full, read-only or forbidden folder: csdseg/io.py) before the CLI's generic
# OSError branch; RunLockedError (csdseg/run_lock.py) is a StageError.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, DataError, MissingInputError, StageError, WriteError, PermissionError,
)
