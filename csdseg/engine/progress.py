"""Progress bars that suit both a terminal and a log file.

On a terminal, ``progress_bar(...)`` is tqdm's bar. When the stream is not a terminal (``make demo
> log 2>&1``, CI, a scheduler's log), a tqdm bar still redraws itself every 0.1 s with a
carriage return, and a log gets thousands of such lines; there ``progress_bar`` prints one plain
line at each quarter of the work instead (4 lines a bar), or one line at the end when the total
is unknown. Both take the same calls: iteration, ``update``, ``set_postfix``, ``close``.
"""
from __future__ import annotations

import sys
import time
from typing import IO, Any, Iterable, Iterator

from tqdm import tqdm

QUARTERS = 4  # lines per bar with a known total when the stream is not a terminal


def is_terminal(stream: IO[str] | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(iterable: Iterable | None = None, *, desc: str = "", total: int | None = None,
             disable: bool | None = False, file: IO[str] | None = None, unit: str = "it",
             initial: int = 0, **tqdm_options: Any):
    """tqdm on a terminal; quarter lines elsewhere. ``disable=True`` prints nothing (as in
    tqdm); ``None`` is taken as False, since the line form is what a log should hold."""
    stream = file if file is not None else sys.stderr
    if disable or is_terminal(stream):
        return tqdm(iterable, desc=desc, total=total, disable=bool(disable), file=stream,
                    unit=unit, initial=initial, **tqdm_options)
    return LineProgress(iterable, desc=desc, total=total, file=stream, unit=unit,
                        initial=initial)


class LineProgress:
    """The non-terminal stand-in: counts like tqdm, writes a line when a quarter is passed."""

    def __init__(self, iterable: Iterable | None, desc: str, total: int | None, file: IO[str],
                 unit: str, initial: int = 0) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None  # a generator: one line at the end
        self.iterable, self.desc, self.total = iterable, desc, total
        self.file, self.unit = file, unit
        self.n, self.postfix, self.closed = initial, "", False
        self.start = time.monotonic()
        # work already done at the start (a resumed stage) is not announced again
        self.printed = self._quarter()

    def _quarter(self) -> int:
        if not self.total:
            return 0
        return min(QUARTERS, self.n * QUARTERS // self.total)

    def _line(self) -> None:
        elapsed = time.strftime("%H:%M:%S", time.gmtime(time.monotonic() - self.start))
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        share = f"{100 * self.n // self.total}% " if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        head = f"{self.desc}: " if self.desc else ""
        self.file.write(f"{head}{share}({done} {self.unit}, {elapsed}{extra})\n")
        self.file.flush()

    def update(self, n: int = 1) -> None:
        self.n += n
        quarter = self._quarter()
        if quarter > self.printed:
            self.printed = quarter
            self._line()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_description(self, desc: str = "") -> None:
        self.desc = desc

    def close(self) -> None:
        if not self.closed and not self.total and self.n:
            self._line()  # unknown total: the only line, at the end
        self.closed = True

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:  # type: ignore[union-attr]
                yield item
                self.update()
        finally:
            self.close()

    def __len__(self) -> int:
        return self.total or 0

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
