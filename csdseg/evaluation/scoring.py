"""Score predictions against ground-truth masks: the report shared by every eval stage.

``evaluate_cams`` scores IRN-format CAM files at a fixed background threshold and over a sweep
of thresholds in one pass; ``evaluate_labels`` scores label maps (a folder of PNGs or a
function). Both return the same JSON-ready report and ``format_report`` prints it as a table.

Context over-activation (synthetic data, whose generator records each image's background
context): among ground-truth background pixels, the share labelled foreground, for images whose
context is the preferred context of a class they contain ("matched") versus the others. A
classifier that learned the context as evidence for the class over-activates on matched images,
so the ratio matched / other measures that shortcut; CSD aims to bring it towards 1.

Single- vs multi-label mIoU and co-occurrence confusion: see ``csdseg.evaluation.groups``.
Context confusion, for datasets whose masks label the context (MSRC): csdseg.evaluation.context.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from csdseg.evaluation import metrics
from csdseg.files.cam import load_cam
from csdseg.data.source import DataError, Source
from csdseg.evaluation.context import counts_for, format_line as context_line
from csdseg.evaluation.groups import GroupCounts, format_lines
from csdseg.files.labels import read_label_png
from csdseg.engine.progress import progress_bar

Report = dict[str, Any]


def _num(x: float) -> float | None:
    """JSON has no NaN: a missing value is null."""
    return None if x is None or not np.isfinite(x) else float(x)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


class Accumulator:
    """Dataset-level counts for T thresholds at once (T = 1 for plain label maps)."""

    def __init__(self, class_names: list[str], num_thresholds: int, contexts: dict | None,
                 source: Source | None = None) -> None:
        self.names = ["background", *class_names]
        self.C = len(self.names)
        self.T = num_thresholds
        self.hist = np.zeros((self.C, self.C, self.T + 1), dtype=np.int64)
        self.n_images = 0
        self.groups = GroupCounts(self.names, self.T)  # single- vs multi-label, co-occurrence
        self.source = source
        self.scene = counts_for(source, self.T) if source is not None else None
        self.contexts = contexts
        if contexts is not None:
            self.class_context = np.asarray(contexts["class_context"], dtype=np.int64)
            if self.class_context.shape[0] != len(class_names):
                raise DataError(
                    f"contexts.json lists {self.class_context.shape[0]} class contexts for "
                    f"{len(class_names)} classes; regenerate it with `csdseg synth`")
            # [group (0 = matched, 1 = other)]: bg pixels; [group, T]: of them labelled fg
            self.bg = np.zeros(2, np.int64)
            self.fg = np.zeros((2, self.T), np.int64)
            self.cls_bg = np.zeros((2, self.C - 1), np.int64)
            self.cls_fg = np.zeros((2, self.C - 1, self.T), np.int64)
            self.ctx_images = 0

    def add(self, image_id: str, gt: np.ndarray, cls: np.ndarray, bucket: np.ndarray,
            present: np.ndarray) -> None:
        """One image: gt [H, W] (0..K, 255), fg class [H, W] (0..K), bucket [H, W] (0..T).

        ``present`` holds the image's class indices 0..K-1 (from its image-level labels).
        """
        hist = metrics.bucket_histogram(gt, cls, bucket, self.C, self.T)
        self.hist += hist
        self.n_images += 1
        self.groups.add(hist, present)
        if self.scene is not None:
            self.scene.add(self.source.load_scene(image_id), cls, bucket, present)
        if self.contexts is None or image_id not in self.contexts["images"]:
            return
        ctx = int(self.contexts["images"][image_id])
        labelled = metrics.predicted_counts(hist[0])  # [C, T]: gt-background pixels per class
        bg_total = int(hist[0].sum())
        preferred = self.class_context[present] == ctx
        group = 0 if preferred.any() else 1
        self.bg[group] += bg_total
        self.fg[group] += labelled[1:].sum(axis=0)
        for c, match in zip(present, preferred):
            g = 0 if match else 1
            self.cls_bg[g, c] += bg_total
            self.cls_fg[g, c] += labelled[c + 1]
        self.ctx_images += 1

    def confusions(self) -> np.ndarray:
        return metrics.sweep_confusions(self.hist)  # [T, C, C]

    def context(self, j: int) -> dict | None:
        """Over-activation at threshold index ``j`` (None without context records)."""
        if self.contexts is None or self.ctx_images == 0:
            return None

        def share(fg: int, bg: int) -> float | None:
            return fg / bg if bg else None

        matched, other = share(self.fg[0, j], self.bg[0]), share(self.fg[1, j], self.bg[1])
        per_class = {}
        for c in range(self.C - 1):
            m = share(self.cls_fg[0, c, j], self.cls_bg[0, c])
            o = share(self.cls_fg[1, c, j], self.cls_bg[1, c])
            per_class[self.names[c + 1]] = {"matched": m, "other": o, "ratio": _ratio(m, o)}
        return {"matched": matched, "other": other, "ratio": _ratio(matched, other),
                "matched_bg_pixels": int(self.bg[0]), "other_bg_pixels": int(self.bg[1]),
                "n_images": self.ctx_images, "per_class": per_class}

    def group_scores(self, j: int) -> Report:
        """Single- vs multi-label mIoU, co-occurrence and context confusion at index ``j``."""
        scores = {**{k: _num(v) for k, v in self.groups.mious(j).items()},
                  "cooccurrence": self.groups.cooccurrence(j)}
        if self.scene is not None:
            scores["context_confusion"] = self.scene.report(j)
        return scores

    def scores(self, conf: np.ndarray) -> Report:
        iou = metrics.iou_per_class(conf)
        precision, recall = metrics.precision_recall(conf)
        return {
            "miou": _num(metrics.mean_iou(conf)),
            "per_class": {n: _num(v) for n, v in zip(self.names, iou)},
            "pixel_accuracy": _num(metrics.pixel_accuracy(conf)),
            "precision": {n: _num(v) for n, v in zip(self.names, precision)},
            "recall": {n: _num(v) for n, v in zip(self.names, recall)},
        }


def _present(source: Source, image_id: str) -> np.ndarray:
    return np.flatnonzero(source.label(image_id) > 0)


def _load_gt(source: Source, image_id: str) -> tuple[np.ndarray, Path | None]:
    return source.load_mask(image_id), source.mask_path(image_id)


def _check_size(shape: tuple[int, ...], gt: np.ndarray, pred_path: Any, gt_path: Any) -> None:
    if tuple(shape) != gt.shape:
        raise DataError(f"{pred_path} has size {tuple(shape)} but the mask {gt_path} has size "
                        f"{gt.shape}; predictions must match the ground truth (H, W)")


def sweep_thresholds(start: float, stop: float, step: float) -> list[float]:
    """start, start + step, ..., stop (inclusive), rounded so 0.15 reads as 0.15."""
    if step <= 0 or stop < start:
        raise ValueError(f"threshold sweep needs step > 0 and stop >= start, got "
                         f"{start}..{stop} step {step}")
    n = int(np.floor((stop - start) / step + 1e-6)) + 1
    return [round(start + i * step, 10) for i in range(n)]


def _missing(paths: list[Path], made_by: str) -> None:
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise DataError(f"{absent[0]} does not exist ({len(absent)} of {len(paths)} files "
                        f"missing); run `csdseg {made_by}` first")


def evaluate_cams(source: Source, ids: list[str], cam_dir: Path, threshold: float,
                  sweep: list[float], progress: bool = True) -> Report:
    """Score CAMs at ``threshold`` and at every ``sweep`` threshold, in one pass over images."""
    cam_dir = Path(cam_dir)
    paths = [cam_dir / f"{i}.npy" for i in ids]
    _missing(paths, "make-cam")
    grid = np.array(sorted(set(sweep) | {threshold}), dtype=np.float64)
    acc = Accumulator(source.class_names, len(grid), source.contexts(), source)
    pairs = list(zip(ids, paths))
    for image_id, path in progress_bar(pairs, desc="eval-cam", disable=not progress):
        gt, gt_path = _load_gt(source, image_id)
        record = load_cam(path, source.num_classes)
        _check_size(record.size, gt, path, gt_path)
        score, cls = metrics.fg_max_and_class(record.high_res, record.keys)
        acc.add(image_id, gt, cls, metrics.threshold_buckets(score, grid), _present(source, image_id))
    conf = acc.confusions()
    index = {float(t): j for j, t in enumerate(grid)}
    fixed = index[threshold]
    report: Report = {**acc.scores(conf[fixed]), "threshold": threshold,
                      **acc.group_scores(fixed), **acc.groups.counts()}
    report["sweep"] = [{"threshold": t, "miou": _num(metrics.mean_iou(conf[index[t]]))}
                       for t in sweep]
    if sweep:
        # first best on ties, i.e. the lowest threshold reaching the best mIoU
        best_t = max(report["sweep"], key=lambda r: -1.0 if r["miou"] is None else r["miou"])
        j = index[best_t["threshold"]]
        report["best"] = {"threshold": best_t["threshold"], **acc.scores(conf[j]),
                          "context": acc.context(j), **acc.group_scores(j)}
    else:
        report["best"] = None
    report["context"] = acc.context(fixed)
    report["n_images"] = acc.n_images
    return report


def evaluate_labels(source: Source, ids: list[str],
                    predictions: Path | str | Callable[[str], np.ndarray],
                    made_by: str = "make-sem-seg", progress: bool = True) -> Report:
    """Score label maps [H, W] (0 = background, 1..K) from a PNG folder or ``fn(id)``."""
    if callable(predictions):
        predict, where = predictions, lambda i: f"prediction for {i}"
    else:
        folder = Path(predictions)
        _missing([folder / f"{i}.png" for i in ids], made_by)
        where = lambda i: folder / f"{i}.png"  # noqa: E731
        predict = lambda i: read_label_png(where(i), made_by=made_by, what="prediction")  # noqa: E731
    acc = Accumulator(source.class_names, 1, source.contexts(), source)
    for image_id in progress_bar(ids, desc="eval", disable=not progress):
        gt, gt_path = _load_gt(source, image_id)
        labels = np.asarray(predict(image_id)).astype(np.int64)
        _check_size(labels.shape, gt, where(image_id), gt_path)
        if labels.min() < 0 or labels.max() >= acc.C:
            raise DataError(f"{where(image_id)} holds values {sorted(set(np.unique(labels).tolist()))[-3:]}"
                            f" outside 0..{acc.C - 1}; label maps hold class indices")
        acc.add(image_id, gt, labels, np.ones_like(labels), _present(source, image_id))
    report: Report = {**acc.scores(acc.confusions()[0]), "threshold": None, "sweep": [],
                      "best": None, "context": acc.context(0), "n_images": acc.n_images,
                      **acc.group_scores(0), **acc.groups.counts()}
    return report


def _pct(x: float | None) -> str:
    return "   -  " if x is None else f"{100 * x:6.2f}"


def format_report(report: Report) -> str:
    """A text table: per-class IoU (at the fixed and the best threshold), mIoU, context."""
    best = report.get("best")
    t = report.get("threshold")
    heads = ["IoU" if t is None else f"IoU@{t:.2f}"]
    if best:
        heads.append(f"IoU@{best['threshold']:.2f}")
    width = max(14, *(len(n) for n in report["per_class"]))
    lines = [f"{'class':<{width}} " + " ".join(f"{h:>9}" for h in heads)]
    for name, iou in report["per_class"].items():
        cols = [_pct(iou)] + ([_pct(best["per_class"][name])] if best else [])
        lines.append(f"{name:<{width}} " + " ".join(f"{c:>9}" for c in cols))
    cols = [_pct(report["miou"])] + ([_pct(best["miou"])] if best else [])
    lines.append(f"{'mIoU':<{width}} " + " ".join(f"{c:>9}" for c in cols))
    if best:
        lines.append(f"best threshold {best['threshold']:.2f} (sweep of {len(report['sweep'])})")
    ctx = report.get("context")
    if ctx:
        ratio = "-" if ctx["ratio"] is None else f"{ctx['ratio']:.2f}"
        lines.append(
            f"context over-activation (gt background labelled fg): matched context "
            f"{_pct(ctx['matched']).strip()}% vs other {_pct(ctx['other']).strip()}% "
            f"(ratio {ratio}, {ctx['n_images']} images)")
    lines += format_lines(report, _pct)
    lines += context_line(report, _pct)
    trivial = report.get("trivial")
    if trivial:
        lines.append("trivial predictors: " + ", ".join(
            f"{name.replace('_', '-')} {_pct(v).strip()}" for name, v in trivial.items()))
    lines.append(f"{report['n_images']} images")
    return "\n".join(lines)


def trivial_mious(source: Source, ids: list[str]) -> dict[str, float]:
    """mIoU of the two predictors any CAM must beat, for the report and the tests.

    ``all_background``: every pixel background. ``whole_image``: every pixel labelled with an
    image-level class (the lowest-indexed present class for multi-label images).
    """
    def whole_image(image_id: str) -> np.ndarray:
        gt, _ = _load_gt(source, image_id)
        return np.full(gt.shape, int(_present(source, image_id)[0]) + 1, dtype=np.int64)

    def background(image_id: str) -> np.ndarray:
        return np.zeros(_load_gt(source, image_id)[0].shape, dtype=np.int64)

    return {name: evaluate_labels(source, ids, fn, progress=False)["miou"]
            for name, fn in (("all_background", background), ("whole_image", whole_image))}
