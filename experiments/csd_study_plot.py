"""The CSD study's figures (docs/csd_study.md): CSD - control against the dose, or per setting.

  python experiments/csd_study_plot.py --out runs/csd_experiment --seeds 0 --png docs/figures/x.png
  python experiments/csd_study_plot.py --out OUT --seeds 0 --settings ours_x1 ours_x1_final ... \
      --png y.png

For each variant (ours, authors), the paired CSD - control on seed(s) ``--seeds`` of
co-occurrence confusion, the single - multi gap and CAM mIoU @0.15 (train), at the doses the
study ran (x 0 = the control itself, x 1 = the paper's lambdas, x 10, x 100); a dose not run is
left out, never interpolated. With ``--settings``: one bar per named setting instead (a setting
not run is drawn as "not run", never as zero). Reads the files experiments/csd_study.py writes.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from csd_study import load_runs, paired  # experiments/ is on sys.path when a script runs

DOSES = [0, 1, 10, 100]
METRICS = [("cooc", "co-occurrence confusion"), ("gap", "single - multi gap"),
           ("miou", "CAM mIoU @0.15")]


def series(controls: dict, settings: dict, variant: str, key: str) -> list[tuple[int, float, float]]:
    """(dose, mean, std) of CSD - control in points, the control itself at dose 0."""
    points = [(0, 0.0, 0.0)]
    for dose in DOSES[1:]:
        runs = settings.get(f"{variant}_x{dose}")
        values = paired(controls, runs, key) if runs else []
        if values:
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            points.append((dose, statistics.mean(values), std))
    return points


def bars(fig: Figure, controls: dict, settings: dict, names: list[str]) -> None:
    """One panel per metric, one bar per setting: CSD - control (mean, std over the seeds)."""
    for col, (key, label) in enumerate(METRICS):
        ax = fig.add_subplot(1, len(METRICS), col + 1)
        for row, name in enumerate(names):
            values = paired(controls, settings[name], key) if name in settings else []
            if not values:
                ax.text(0.02, row, "not run", va="center", fontsize=7, color="#7f8c8d",
                        transform=ax.get_yaxis_transform())
                continue
            mean = statistics.mean(values)
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            better = mean > 0 if key == "miou" else mean < 0  # mIoU up, the errors down
            ax.barh(row, mean, xerr=std or None, color="#2980b9" if better else "#c0392b",
                    capsize=3)
        ax.axvline(0, color="#7f8c8d", lw=0.8)
        ax.set_yticks(range(len(names)), names if col == 0 else [""] * len(names), fontsize=8)
        ax.set_ylim(len(names) - 0.5, -0.5)  # first setting on top, every row whole
        ax.set_title(f"{label}: CSD - control (points)", fontsize=9)
    fig.text(0.5, -0.04, "blue: better than the control, red: worse; error bars: std over the seeds (none for one seed)",
             ha="center", fontsize=8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/csd_experiment")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--png", default="csd_dose.png")
    parser.add_argument("--title", default="")
    parser.add_argument("--settings", nargs="+", help="bars for these settings, not the dose")
    args = parser.parse_args()
    matplotlib.rcParams["axes.unicode_minus"] = False  # an ASCII minus: every font has it
    controls, settings = load_runs(Path(args.out), args.seeds)
    fig = Figure(figsize=(10.5, 3.2))
    if args.settings:
        bars(fig, controls, settings, args.settings)
    for col, (key, label) in enumerate(METRICS if not args.settings else []):
        ax = fig.add_subplot(1, len(METRICS), col + 1)
        for variant, colour in (("ours", "#c0392b"), ("authors", "#2980b9")):
            pts = series(controls, settings, variant, key)
            xs = [DOSES.index(d) for d, _, _ in pts]
            ax.errorbar(xs, [m for _, m, _ in pts], yerr=[s for _, _, s in pts], marker="o",
                        color=colour, label=f"variant={variant}", capsize=3)
        ax.axhline(0, color="#7f8c8d", lw=0.8)
        ax.set_xticks(range(len(DOSES)), [f"x{d}" for d in DOSES])
        ax.set_xlabel("lambdas / the paper's")
        ax.set_title(f"{label}: CSD - control (points)", fontsize=9)
        if col == 0:
            ax.legend(fontsize=8)
    fig.suptitle(args.title or f"seeds {', '.join(map(str, args.seeds))}", fontsize=9, y=1.04)
    FigureCanvasAgg(fig)
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=90, bbox_inches="tight")
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
