"""Report figures by image-level label: single- vs multi-label mIoU, co-occurrence confusion.

Single- vs multi-label mIoU: the report's dataset-level confusion-matrix mIoU (background and
classes), computed over the images with exactly one image-level class ("single") and over those
with two or more ("multi"); images without a class count to neither. The gap is single - multi.

Co-occurrence confusion: for each ordered class pair (a, b), a != b, labelled together in at
least one image, the share of ground-truth class-a pixels predicted as b, counted over the
images labelled with both a and b. The mean is over the pairs with at least one such class-a
pixel (lower is better); ``worst`` lists the five largest shares (ties by class names).

Counts are kept for every threshold of a CAM sweep (T = 1 for label maps), so the same figures
come at the fixed and at the best threshold. See docs/method.md.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from csdseg.evaluation import metrics

WORST = 5


class GroupCounts:
    """Per-group bucket histograms [2, C, C, T + 1] and pair counts [T, K, K], image by image."""

    def __init__(self, names: list[str], num_thresholds: int) -> None:
        self.names = names  # background first
        C, K, T = len(names), len(names) - 1, num_thresholds
        self.hist = np.zeros((2, C, C, T + 1), np.int64)  # group 0 = single, 1 = multi
        self.n = np.zeros(2, np.int64)
        self.num = np.zeros((T, K, K), np.int64)
        self.den = np.zeros((T, K, K), np.int64)
        self.seen = np.zeros((K, K), np.int64)

    def add(self, hist: np.ndarray, present: np.ndarray) -> None:
        """One image: its :func:`metrics.bucket_histogram` [C, C, T + 1], its classes 0..K-1."""
        group = metrics.label_group(present)
        if group is None:
            return
        self.hist[group] += hist
        self.n[group] += 1
        if group == 1:
            rows = metrics.sweep_confusions(hist[present + 1])  # [T, n, C]: gt rows present
            metrics.add_cooccurrence(self.num, self.den, self.seen, rows, present)

    def miou(self, group: int, j: int) -> float:
        """The group's mIoU at threshold index ``j`` (NaN without images)."""
        return metrics.mean_iou(metrics.sweep_confusions(self.hist[group])[j])

    def cooccurrence(self, j: int) -> dict[str, Any]:
        share = metrics.cooccurrence_shares(self.num[j], self.den[j], self.seen)
        a, b = np.nonzero(np.isfinite(share))
        pairs = sorted(((-share[i, k], self.names[i + 1], self.names[k + 1], i, k)
                        for i, k in zip(a, b)), key=lambda r: r[:3])
        worst = [{"a": na, "b": nb, "share": float(share[i, k]), "pixels": int(self.den[j, i, k])}
                 for _, na, nb, i, k in pairs[:WORST]]
        return {"mean": float(np.mean(share[a, b])) if a.size else None,
                "pairs": int(a.size), "cooccurring_pairs": int((self.seen > 0).sum()),
                "worst": worst}

    def mious(self, j: int) -> dict[str, float]:
        """Single- and multi-label mIoU and their gap at threshold index ``j`` (NaN if none)."""
        single, multi = self.miou(0, j), self.miou(1, j)
        return {"single_miou": single, "multi_miou": multi, "single_multi_gap": single - multi}

    def counts(self) -> dict[str, int]:
        return {"n_single": int(self.n[0]), "n_multi": int(self.n[1])}


def format_lines(report: dict[str, Any], percent: Callable[[float | None], str]) -> list[str]:
    """One line for single vs multi mIoU and one for co-occurrence confusion (if reported)."""
    if "single_miou" not in report:
        return []

    def pct(x: float | None) -> str:
        return percent(x).strip()

    def groups(r: dict[str, Any]) -> str:
        return (f"single-label {pct(r['single_miou'])} vs multi-label {pct(r['multi_miou'])} "
                f"(gap {pct(r['single_multi_gap'])})")

    t, best = report.get("threshold"), report.get("best")
    at = "" if t is None else f" @{t:.2f}"
    line = (f"mIoU{at} by image-level labels: {groups(report)}; "
            f"{report['n_single']} single, {report['n_multi']} multi images")
    if best and "single_miou" in best:
        line += f"; @{best['threshold']:.2f}: {groups(best)}"
    co = report["cooccurrence"]
    worst = ", ".join(f"{w['a']}->{w['b']} {pct(w['share'])}%" for w in co["worst"])
    return [line, f"co-occurrence confusion{at} (gt a predicted b, images with both): mean "
                  f"{pct(co['mean'])}% over {co['pairs']} pairs" + (f"; worst {worst}" if worst else "")]
