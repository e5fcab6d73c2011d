"""``runs/<name>/report.html``: one self-contained file (every image a base64 data URI).

Sections: the baseline / control / CSD table, per-class IoU bars (CAMs, pseudo-masks, segmentation),
the object x context heat-map of the context confusion (MSRC), train-cam loss curves (loss_cls, and CSD's loss_fg / loss_bg), and a gallery of images with
their ground truth, CAM heat maps and pseudo-masks for each run.
"""
from __future__ import annotations

import datetime
from html import escape
from pathlib import Path
from typing import Any

from csdseg.config import Config
from csdseg.data import build_source
from csdseg.engine.logger import read_log
from csdseg.files.atomic import atomic_write_text
from csdseg.report.gallery import gallery_rows, pick_ids
from csdseg.report.plots import context_heatmap, iou_bars, training_curves
from csdseg.report.table import headings, load_report, row_cells, run_names
from csdseg.runs import RunDir

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.gallery { width: 100%; table-layout: fixed; }
.gallery td { text-align: center; font-size: 11px; overflow: hidden; }
.gallery img { display: block; width: 100%; height: auto; image-rendering: pixelated; }
.missing { color: #999; }
img.chart { max-width: 100%; }
"""

SECTIONS = [("eval_cam", "CAMs at the background threshold"),
            ("eval_sem_seg", "pseudo-masks"), ("eval_seg", "segmentation network")]


def _table_html(rows: list[dict[str, Any]], names: dict[str, str | None]) -> str:
    out = ['<table id="summary"><tr>' + "".join(f"<th>{escape(h)}</th>" for h in headings(names))
           + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row_cells(r, names))
                   + "</tr>")
    return "\n".join(out + ["</table>"])


def _img(uri: str, alt: str, cls: str = "") -> str:
    return f'<img src="{uri}" alt="{escape(alt)}"' + (f' class="{cls}"' if cls else "") + ">"


def build_report(base: Config, control: Config | None, csd: Config | None,
                 table: list[dict[str, Any]], n_gallery: int = 8, out: Path | None = None) -> Path:
    """Write the report (default ``runs/<base.name>/report.html``) and return its path.

    The baseline, its control (CSD off, same warm start and epochs) and the CSD run side by
    side, wherever they exist."""
    cfgs = {k: c for k, c in (("baseline", base), ("control", control), ("csd", csd))
            if c is not None}
    runs = {k: RunDir.from_config(c) for k, c in cfgs.items()}
    names = run_names(base, control, csd)
    title = f"csdseg report: {base.name}" + "".join(
        f" vs {c.name}" for c in (control, csd) if c is not None)
    parts = [f"<h1>{escape(title)}</h1>",
             f"<p>written {datetime.datetime.now():%Y-%m-%d %H:%M}; runs in "
             f"{escape(str(Path(base.run_root).resolve()))}</p>",
             "<h2>Summary</h2>", _table_html(table, names)]
    if control is not None and csd is not None:
        parts.append("<p>The control is the CSD run with CSD off: the same warm start from "
                     "the baseline, the same epochs and learning rate. <b>CSD - control</b> is "
                     "the effect of CSD alone; read it against the seed noise in "
                     "docs/benchmarks.md.</p>")

    parts.append("<h2>Per-class IoU</h2>")
    for stage, label in SECTIONS:
        series = {k: rep["per_class"] for k, cfg in cfgs.items()
                  if (rep := load_report(cfg, stage)) is not None}
        if series:
            parts.append(_img(iou_bars(series, f"per-class IoU: {label}"), label, "chart"))
        else:
            parts.append(f'<p class="missing">{escape(label)}: no report yet ({stage})</p>')

    maps = {f"{k} @{rep['threshold']:.2f}": rep["context_confusion"]["matrix"]
            for k, cfg in cfgs.items() if (rep := load_report(cfg, "eval_cam")) is not None
            and rep.get("context_confusion")}
    if maps:  # datasets whose masks label the context (MSRC): csdseg/evaluation/context.py
        parts.append("<h2>Context confusion (CAMs)</h2><p>The share of each context's pixels "
                     "labelled as the object, in the images labelled with it (lower is "
                     "better).</p>")
        parts += [_img(context_heatmap(m, f"{k}: context labelled as the object (%)"),
                       f"context confusion {k}", "chart") for k, m in maps.items()]

    parts.append("<h2>Training curves (train-cam)</h2>")
    logs = {k: read_log(rd.log("train_cam"), kind="step") for k, rd in runs.items()}
    curves = training_curves(logs)
    parts.append(_img(curves, "train-cam losses", "chart") if curves
                 else '<p class="missing">no train-cam log yet</p>')

    parts.append("<h2>Gallery</h2>")
    source = build_source(base.data, base.data.eval_split)
    ids = pick_ids(source, runs["baseline"], n_gallery) if source.has_masks() else []
    if ids:
        heads, rows = gallery_rows(source, ids, runs)
        parts.append('<table class="gallery"><tr><th>id</th>'
                     + "".join(f"<th>{escape(h)}</th>" for h in heads) + "</tr>")
        for image_id, cells in rows:
            tds = "".join(f"<td>{_img(u, f'{h} {image_id}') if u else '-'}</td>"
                          for h, u in zip(heads, cells))
            parts.append(f"<tr><td>{escape(image_id)}</td>{tds}</tr>")
        parts.append("</table>")
    else:
        parts.append('<p class="missing">no CAMs with ground truth to show yet</p>')

    doc = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
           f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>\n"
           + "\n".join(parts) + "\n</body></html>\n")
    path = out or runs["baseline"].root / "report.html"
    atomic_write_text(path, doc)
    return path
