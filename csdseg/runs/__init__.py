"""A run: the folder ``runs/<name>/`` that every stage reads and writes, one writer at a time.

- :mod:`csdseg.runs.folder`: the folder's contract (:class:`RunDir`: where each output lives,
  which command makes a missing input) and where each evaluation report goes;
- :mod:`csdseg.runs.lock`: one writer per run, ``runs/<name>/.lock``;
- :mod:`csdseg.runs.identity`: who holds a lock, and whether that process still runs.
"""
from csdseg.runs.folder import MissingInputError, RunDir, eval_report_path

__all__ = ["MissingInputError", "RunDir", "eval_report_path"]
