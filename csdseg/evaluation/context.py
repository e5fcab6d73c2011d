"""Context confusion: how much of an object's usual surroundings is labelled as the object.

For datasets whose masks also label the context (MSRC: grass, sky, water, road, ...; a
:class:`~csdseg.data.source.Source` with ``load_scene``), for each scored pair (object class c,
context class s): among the images labelled c, the share of ground-truth s pixels predicted as
c (grass -> cow, water -> boat). The source fixes the scored pairs (MSRC: pairs held by at
least 5 training images), so every split and method is scored on the same pairs. The mean is
over the pairs with at least one such pixel; ``worst`` lists the five largest shares. Lower is
better; a map that covers the whole image scores 100% on every pair. Counts are kept per
threshold of a CAM sweep (T = 1 for label maps), like the rest of the report.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from csdseg.evaluation import metrics

WORST = 5


class ContextCounts:
    """num [T, K, S]: context-s pixels labelled c in images labelled c; den [K, S]: those pixels."""

    def __init__(self, class_names: list[str], scene_names: list[str],
                 pairs: list[tuple[int, int]], num_thresholds: int) -> None:
        self.class_names, self.scene_names, self.pairs = class_names, scene_names, list(pairs)
        K, S, T = len(class_names), len(scene_names), num_thresholds
        self.C = max(K + 1, S)
        self.T = T
        self.num = np.zeros((T, K, S), np.int64)
        self.den = np.zeros((K, S), np.int64)
        self.images = np.zeros((K, S), np.int64)

    def add(self, scene: np.ndarray, cls: np.ndarray, bucket: np.ndarray,
            present: np.ndarray) -> None:
        """One image: scene [H, W] (context 0..S-1, 255 elsewhere), fg class [H, W] (0..K),
        bucket [H, W] (0..T, see metrics.threshold_buckets), its classes 0..K-1."""
        hist = metrics.bucket_histogram(scene, cls, bucket, self.C, self.T)  # [C, C, T + 1]
        labelled = metrics.predicted_counts(hist)  # [C_scene, C_cls, T]
        S = len(self.scene_names)
        pixels = hist[:S].sum(axis=(1, 2))  # [S]
        for c in present:
            self.num[:, c, :] += labelled[:S, c + 1, :].T
            self.den[c] += pixels
            self.images[c] += pixels > 0

    def report(self, j: int) -> dict[str, Any]:
        rows = []
        for c, s in self.pairs:
            if self.den[c, s] > 0:
                rows.append({"class": self.class_names[c], "context": self.scene_names[s],
                             "share": float(self.num[j, c, s] / self.den[c, s]),
                             "pixels": int(self.den[c, s]), "images": int(self.images[c, s])})
        worst = sorted(rows, key=lambda r: (-r["share"], r["class"], r["context"]))[:WORST]
        return {"mean": float(np.mean([r["share"] for r in rows])) if rows else None,
                "pairs": len(rows), "worst": worst,
                "matrix": {r["class"] + "|" + r["context"]: r["share"] for r in rows}}


def counts_for(source: Any, num_thresholds: int) -> ContextCounts | None:
    """A :class:`ContextCounts` when ``source`` labels context (has ``load_scene``), else None."""
    if not hasattr(source, "load_scene"):
        return None
    return ContextCounts(source.class_names, source.scene_classes(), source.scene_pairs,
                         num_thresholds)


def format_line(report: dict[str, Any], percent: Any) -> list[str]:
    """One line: the mean over pairs and the worst pairs (empty without the figure)."""
    ctx = report.get("context_confusion")
    if not ctx:
        return []
    worst = ", ".join(f"{w['context']}->{w['class']} {percent(w['share']).strip()}%"
                      for w in ctx["worst"])
    return [f"context confusion (gt context labelled as the image's object): mean "
            f"{percent(ctx['mean']).strip()}% over {ctx['pairs']} pairs; worst {worst}"]
