"""Training logs: JSON lines (for scripts and the report) and TensorBoard (for people)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from csdseg.io import atomic_write_text


class RunLogger:
    """Append-only JSONL log plus TensorBoard scalars; only rank 0 should create one."""

    def __init__(self, jsonl_path: Path, tb_dir: Path | None = None,
                 start_step: int | None = None) -> None:
        """``start_step``: the step training (re)starts from; records past it, left by a run
        killed after its last checkpoint, are dropped so a resumed log has each step once."""
        jsonl_path.parent.mkdir(parents=True, exist_ok=True)
        if start_step is not None and jsonl_path.is_file():
            kept = [r for r in read_log(jsonl_path) if r.get("step", 0) <= start_step]
            atomic_write_text(jsonl_path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = open(jsonl_path, "a", encoding="utf-8")
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
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in scalars.items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        self._file.close()
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
