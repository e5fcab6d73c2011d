"""Charts as PNG data URIs (matplotlib's Agg canvas, no pyplot state, no display needed)."""
from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

COLOURS = {"baseline": "#7f8c8d", "control": "#2980b9", "csd": "#c0392b"}


def figure_uri(fig: Figure, dpi: int = 90) -> str:
    """Render ``fig`` to a ``data:image/png;base64,...`` URI."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def iou_bars(series: dict[str, dict[str, float | None]], title: str) -> str:
    """Grouped bars of per-class IoU (%), one group per class, one bar per series
    (``{"baseline": {class: iou}, "csd": {...}}``); a missing IoU is drawn as no bar."""
    names = list(next(iter(series.values())))
    x = np.arange(len(names))
    width = 0.8 / len(series)
    fig = Figure(figsize=(max(6.0, 0.42 * len(names)), 3.2))
    ax = fig.add_subplot()
    for k, (label, per_class) in enumerate(series.items()):
        values = [100 * v if v is not None else np.nan for v in (per_class.get(n) for n in names)]
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=label,
               color=COLOURS.get(label))
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return figure_uri(fig)


def training_curves(logs: dict[str, list[dict[str, Any]]],
                    keys: tuple[str, ...] = ("loss_cls", "loss_fg", "loss_bg")) -> str | None:
    """One panel per loss key present in any log, one line per run (x = step);
    None when no log holds any of ``keys``."""
    present = [k for k in keys if any(k in r for rows in logs.values() for r in rows)]
    if not present:
        return None
    fig = Figure(figsize=(3.6 * len(present), 2.8))
    for n, key in enumerate(present):
        ax = fig.add_subplot(1, len(present), n + 1)
        for label, rows in logs.items():
            pts = [(r["step"], r[key]) for r in rows if key in r and r[key] is not None]
            if pts:
                steps, values = zip(*pts)
                ax.plot(steps, values, label=label, color=COLOURS.get(label), lw=1.3)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return figure_uri(fig)


def context_heatmap(matrix: dict[str, float], title: str) -> str:
    """Object x context heat-map of the context confusion (``{"cow|grass": share}``, the
    eval report's ``context_confusion.matrix``): the share of each context's pixels labelled
    as the object, in %, written in each scored cell; unscored pairs are left blank."""
    pairs = [key.split("|", 1) for key in matrix]
    objects = sorted({o for o, _ in pairs})
    contexts = sorted({c for _, c in pairs})
    grid = np.full((len(objects), len(contexts)), np.nan)
    for (o, c), share in zip(pairs, matrix.values()):
        grid[objects.index(o), contexts.index(c)] = 100 * share
    fig = Figure(figsize=(1.0 + 0.62 * len(contexts), 0.9 + 0.32 * len(objects)))
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="Reds", vmin=0, vmax=100, aspect="auto")
    for i, j in zip(*np.nonzero(np.isfinite(grid))):
        ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=7,
                color="white" if grid[i, j] > 60 else "black")
    ax.set_xticks(range(len(contexts)), contexts, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(objects)), objects, fontsize=8)
    ax.set_title(title, fontsize=9)
    return figure_uri(fig)
