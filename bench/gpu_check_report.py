"""bench/gpu_check.py's report: one row per measured item, sections run under a time budget.

A row is a check when it states a tolerance (``ok`` is then value <= tolerance, or a flag the
item computed itself) and a measurement otherwise (``ok`` None). An item that raises becomes
a failed row holding the exception's last line, so one broken stage never hides the others.
A section whose time is spent marks its remaining items "skipped (budget)" instead of
running them: that is how the whole GPU run stays inside its 8 minutes (bench/gpu_check.py).
"""
from __future__ import annotations

import json
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Row:
    section: str
    item: str
    value: float | None = None
    unit: str = ""
    tolerance: float | None = None
    ok: bool | None = None  # None: a measurement, not a check
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # numbers the estimates reuse

    @property
    def failed(self) -> bool:
        return self.ok is False


def check(section: str, item: str, value: float, tolerance: float, unit: str = "",
          note: str = "") -> Row:
    """A row that passes when ``value`` is finite and at most ``tolerance``."""
    value = float(value)
    return Row(section, item, value, unit, tolerance,
               math.isfinite(value) and value <= tolerance, note)


class Section:
    """Runs items in order until ``budget_s`` is spent; collects their rows."""

    def __init__(self, name: str, budget_s: float) -> None:
        self.name, self.budget_s = name, budget_s
        self.rows: list[Row] = []
        self.start = time.monotonic()
        self.skipped: list[str] = []

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)

    def run(self, item: str, fn: Callable[[], Row | list[Row] | None]) -> None:
        if self.left() <= 0:
            self.skipped.append(item)
            self.rows.append(Row(self.name, item, note="skipped (section budget spent)"))
            return
        try:
            out = fn()
        except Exception as exc:  # noqa: BLE001 - the report names it; the run goes on
            last = (traceback.format_exception_only(type(exc), exc)[-1]).strip()
            traceback.print_exc()
            out = Row(self.name, item, ok=False, note=f"error: {last[:300]}")
        for row in out if isinstance(out, list) else [out] if out is not None else []:
            self.rows.append(row)

    def summary(self) -> dict[str, Any]:
        return {"seconds": round(time.monotonic() - self.start, 1), "budget_s": self.budget_s,
                "skipped": self.skipped, "rows": [asdict(r) for r in self.rows],
                "passed": not any(r.failed for r in self.rows)}


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.2e}"


def markdown(sections: dict[str, Section]) -> str:
    lines = ["| section | item | value | tolerance | result | note |", "|---|---|---|---|---|---|"]
    for section in sections.values():
        for r in section.rows:
            result = {True: "pass", False: "FAIL", None: ""}[r.ok]
            value = f"{fmt(r.value)} {r.unit}".strip()
            tol = "" if r.tolerance is None else f"<= {fmt(r.tolerance)}"
            lines.append(f"| {r.section} | {r.item} | {value} | {tol} | {result} | {r.note} |")
    return "\n".join(lines)


def write_json(path: Path, header: dict[str, Any], sections: dict[str, Section],
               estimates: list[dict[str, Any]]) -> dict[str, Any]:
    report = {**header, "sections": {k: s.summary() for k, s in sections.items()},
              "estimates": estimates,
              "passed": all(not r.failed for s in sections.values() for r in s.rows)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str))
    return report
