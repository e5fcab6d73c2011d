"""Training logs: JSON lines (for scripts and the report) and TensorBoard (for people).

The JSONL log is never seen empty or half-written, even after SIGKILL: it is created whole,
with its first record, by an atomic write (``csdseg.files.atomic``), and each later record is
appended by one ``write`` of the complete line on an ``O_APPEND`` descriptor, so a kill lands
between records, not inside one. A full disk or forbidden folder stops with
``csdseg.files.atomic``'s one-line :class:`~csdseg.errors.WriteError`, as every other write does.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from csdseg.files.atomic import atomic_write_bytes, atomic_write_text, ensure_dir, write_error


class RunLogger:
    """Append-only JSONL log plus TensorBoard scalars; only rank 0 should create one."""

    def __init__(self, jsonl_path: Path, tb_dir: Path | None = None,
                 start_step: int | None = None) -> None:
        """``start_step``: the step training (re)starts from; records past it, left by a run
        killed after its last checkpoint, are dropped so a resumed log has each step once."""
        ensure_dir(jsonl_path.parent, jsonl_path)
        if start_step is not None and jsonl_path.is_file():
            kept = [r for r in read_log(jsonl_path) if r.get("step", 0) <= start_step]
            if kept:
                atomic_write_text(jsonl_path, "".join(json.dumps(r) + "\n" for r in kept))
            else:  # nothing to keep: no file until the first record (never an empty one)
                jsonl_path.unlink()
        self._path = jsonl_path
        self._fd: int | None = None  # opened at the first record
        self._tb = None
        if tb_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                purge = {"purge_step": start_step + 1} if start_step else {}
                self._tb = SummaryWriter(str(tb_dir), **purge)
            except ImportError:  # tensorboard is optional at run time
                self._tb = None
        self._start = time.time()

    def log(self, step: int, kind: str = "step", **scalars: Any) -> None:
        record = {"kind": kind, "step": step, "time": round(time.time() - self._start, 3)}
        record.update({k: (float(v) if hasattr(v, "__float__") else v) for k, v in scalars.items()})
        self._append((json.dumps(record) + "\n").encode("utf-8"))
        if self._tb is not None:
            for key, value in scalars.items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def _append(self, line: bytes) -> None:
        try:
            if self._fd is None and not self._path.is_file():
                atomic_write_bytes(self._path, line)  # created holding its first record
                self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND)
                return
            if self._fd is None:
                self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND)
            view = memoryview(line)
            while view:  # one write for a line (a short write is only possible on a full disk)
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            clear = write_error(exc, self._path, len(line))
            if clear is None:
                raise
            raise clear from exc

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._tb is not None:
            self._tb.close()


def read_log(path: Path, kind: str | None = None) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill; the rest is intact
            continue
    return [r for r in rows if kind is None or r.get("kind") == kind]
