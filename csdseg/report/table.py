"""The baseline-vs-CSD table: one row per metric, read from the runs' evaluation reports.

A metric whose report is absent (stage not run yet) is None in the JSON and "-" in markdown.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from csdseg.config import Config
from csdseg.io import atomic_write_json, atomic_write_text
from csdseg.runs import RunDir

# (key, label, report, path into the report); percentages unless the key ends in "ratio"
METRICS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("cam_miou", "CAM mIoU @bg threshold", "eval_cam", ("miou",)),
    ("cam_best_miou", "CAM mIoU, best threshold", "eval_cam", ("best", "miou")),
    ("cam_best_threshold", "CAM best threshold", "eval_cam", ("best", "threshold")),
    ("cam_context_ratio", "CAM context over-activation ratio", "eval_cam", ("context", "ratio")),
    ("pseudo_miou", "pseudo-mask mIoU", "eval_sem_seg", ("miou",)),
    ("pseudo_context_ratio", "pseudo-mask context over-activation ratio", "eval_sem_seg",
     ("context", "ratio")),
    ("seg_miou", "segmentation mIoU (seg.eval_split)", "eval_seg", ("miou",)),
]


def load_report(run: RunDir, stage: str) -> dict[str, Any] | None:
    path = run.report(stage)
    return json.loads(path.read_text()) if path.is_file() else None


def _dig(report: dict | None, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(report, dict):
            return None
        report = report.get(key)
    return report


def summarise(base: Config, csd: Config | None) -> list[dict[str, Any]]:
    """Rows ``{key, metric, baseline, csd, delta}`` (csd/delta None without a CSD run)."""
    runs = {"baseline": RunDir.from_config(base)}
    if csd is not None:
        runs["csd"] = RunDir.from_config(csd)
    rows = []
    for key, label, stage, path in METRICS:
        row: dict[str, Any] = {"key": key, "metric": label, "baseline": None, "csd": None,
                               "delta": None}
        for which, rd in runs.items():
            row[which] = _dig(load_report(rd, stage), path)
        if isinstance(row["baseline"], (int, float)) and isinstance(row["csd"], (int, float)):
            row["delta"] = row["csd"] - row["baseline"]
        rows.append(row)
    return rows


def format_cell(key: str, value: Any, signed: bool = False) -> str:
    if value is None:
        return "-"
    if key.endswith(("ratio", "threshold")):
        return f"{value:+.2f}" if signed else f"{value:.2f}"
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def to_markdown(rows: list[dict[str, Any]], base_name: str, csd_name: str | None) -> str:
    heads = ["metric", f"baseline ({base_name})"] + ([f"CSD ({csd_name})", "delta"] if csd_name
                                                      else [])
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in rows:
        cells = [r["metric"], format_cell(r["key"], r["baseline"])]
        if csd_name:
            cells += [format_cell(r["key"], r["csd"]),
                      format_cell(r["key"], r["delta"], signed=True)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("\nmIoU in %; a context ratio (gt background labelled foreground on images in "
                 "their class's usual context / other images) nearer 1 is better.")
    return "\n".join(lines)


def write_table(base: Config, csd: Config | None) -> tuple[list[dict[str, Any]], str]:
    """Write ``reports/pipeline.json`` and ``reports/pipeline.md`` in the baseline's run."""
    rows = summarise(base, csd)
    markdown = to_markdown(rows, base.name, csd.name if csd is not None else None)
    rd = RunDir.from_config(base)
    atomic_write_json(rd.report("pipeline"), {
        "baseline": base.name, "csd": csd.name if csd is not None else None, "rows": rows})
    atomic_write_text(Path(rd.root) / "reports" / "pipeline.md", markdown + "\n")
    return rows, markdown
