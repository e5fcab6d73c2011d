"""The baseline / control / CSD table: one row per metric, read from the runs' evaluation reports.

The control is the CSD run without CSD (same warm start from the baseline, same epochs and
learning rate), so "CSD - control" is the effect of CSD alone; CSD - baseline would mix CSD
with the extra training. A metric whose report is absent (stage not run yet) is None in the
JSON and "-" in markdown; the context rows appear only for datasets that record context (the
synthetic data's ratio, MSRC's context confusion), CSD's sample counts only beside a CSD run.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from csdseg.config import Config
from csdseg.files.atomic import atomic_write_json, atomic_write_text
from csdseg.runs import RunDir, eval_report_path

# (key, label, report, path into the report); percentages unless the key ends in "ratio"
METRICS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("cam_miou", "CAM mIoU @bg threshold", "eval_cam", ("miou",)),
    ("cam_best_miou", "CAM mIoU, best threshold", "eval_cam", ("best", "miou")),
    ("cam_best_threshold", "CAM best threshold", "eval_cam", ("best", "threshold")),
    ("cam_single_multi_gap", "CAM single- minus multi-label-image mIoU", "eval_cam",
     ("single_multi_gap",)),
    ("cam_cooccurrence", "CAM co-occurrence confusion (lower is better)", "eval_cam",
     ("cooccurrence", "mean")),
    ("cam_context_ratio", "CAM context over-activation ratio", "eval_cam", ("context", "ratio")),
    ("cam_context_confusion", "CAM context confusion (lower is better)", "eval_cam",
     ("context_confusion", "mean")),
    ("pseudo_miou", "pseudo-mask mIoU", "eval_sem_seg", ("miou",)),
    ("pseudo_context_confusion", "pseudo-mask context confusion", "eval_sem_seg",
     ("context_confusion", "mean")),
    ("pseudo_cooccurrence", "pseudo-mask co-occurrence confusion", "eval_sem_seg",
     ("cooccurrence", "mean")),
    ("pseudo_context_ratio", "pseudo-mask context over-activation ratio", "eval_sem_seg",
     ("context", "ratio")),
    ("seg_miou", "segmentation mIoU (seg.eval_split)", "eval_seg", ("miou",)),
    ("seg_context_confusion", "segmentation context confusion", "eval_seg",
     ("context_confusion", "mean")),
    # how much CSD ran (train-cam's reports/csd_counts.json; the CSD run only)
    ("csd_samples_per_epoch", "CSD samples with views per epoch", "csd_counts",
     ("samples_per_epoch_mean",)),
    ("csd_touched_share", "share of batches CSD touched", "csd_counts", ("touched_share",)),
]
COLUMNS = ("baseline", "control", "csd")
# rows shown only where some run has them: dataset-specific context figures (the synthetic
# data's ratio, MSRC's context confusion) and CSD's own counts
OPTIONAL = {"cam_context_ratio", "cam_context_confusion", "pseudo_context_confusion",
            "pseudo_context_ratio", "seg_context_confusion", "csd_samples_per_epoch",
            "csd_touched_share"}


def load_report(cfg: Config, stage: str) -> dict[str, Any] | None:
    path = (RunDir.from_config(cfg).report(stage) if stage == "csd_counts"
            else eval_report_path(cfg, stage))
    return json.loads(path.read_text()) if path.is_file() else None


def _dig(report: dict | None, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(report, dict):
            return None
        report = report.get(key)
    return report


def summarise(base: Config, control: Config | None = None,
              csd: Config | None = None) -> list[dict[str, Any]]:
    """Rows ``{key, metric, baseline, control, csd, delta}``; delta = CSD - control (None
    unless both ran)."""
    runs = {"baseline": base, "control": control, "csd": csd}
    rows = []
    for key, label, stage, path in METRICS:
        row: dict[str, Any] = {"key": key, "metric": label, "delta": None}
        for which, cfg in runs.items():
            row[which] = _dig(load_report(cfg, stage), path) if cfg is not None else None
        if isinstance(row["control"], (int, float)) and isinstance(row["csd"], (int, float)):
            row["delta"] = row["csd"] - row["control"]
        if key in OPTIONAL and all(row[c] is None for c in COLUMNS):
            continue  # a context figure this dataset does not record, or no CSD run
        rows.append(row)
    return rows


def format_cell(key: str, value: Any, signed: bool = False) -> str:
    if value is None:
        return "-"
    if key.endswith("per_epoch"):  # a count
        return f"{value:+.0f}" if signed else f"{value:.0f}"
    if key.endswith(("ratio", "threshold")):
        return f"{value:+.2f}" if signed else f"{value:.2f}"
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def headings(names: dict[str, str | None]) -> list[str]:
    """Column titles for the runs that exist (``names``: column -> run name or None)."""
    titles = {"baseline": "baseline", "control": "control", "csd": "CSD"}
    heads = ["metric"] + [f"{titles[c]} ({names[c]})" for c in COLUMNS if names.get(c)]
    if names.get("control") and names.get("csd"):
        heads.append("CSD - control")
    return heads


def row_cells(row: dict[str, Any], names: dict[str, str | None]) -> list[str]:
    cells = [row["metric"]] + [format_cell(row["key"], row[c]) for c in COLUMNS if names.get(c)]
    if names.get("control") and names.get("csd"):
        cells.append(format_cell(row["key"], row["delta"], signed=True))
    return cells


def to_markdown(rows: list[dict[str, Any]], names: dict[str, str | None]) -> str:
    heads = headings(names)
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(row_cells(r, names)) + " |" for r in rows]
    lines.append("\nmIoU in %; a context ratio (gt background labelled foreground on images in "
                 "their class's usual context / other images) nearer 1 is better. The control "
                 "is the CSD run with CSD off (same warm start and epochs): CSD - control is "
                 "CSD's own effect.")
    return "\n".join(lines)


def run_names(base: Config, control: Config | None, csd: Config | None) -> dict[str, str | None]:
    return {"baseline": base.name, "control": control.name if control is not None else None,
            "csd": csd.name if csd is not None else None}


def write_table(base: Config, control: Config | None = None, csd: Config | None = None
                ) -> tuple[list[dict[str, Any]], str]:
    """Write ``reports/pipeline.json`` and ``reports/pipeline.md`` in the baseline's run."""
    rows = summarise(base, control, csd)
    names = run_names(base, control, csd)
    markdown = to_markdown(rows, names)
    rd = RunDir.from_config(base)
    atomic_write_json(rd.report("pipeline"), {**names, "rows": rows})
    atomic_write_text(Path(rd.root) / "reports" / "pipeline.md", markdown + "\n")
    return rows, markdown
