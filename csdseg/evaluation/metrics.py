"""Segmentation and classification metrics, all computed from dataset-level counts.

Segmentation scores follow IRN / chainercv: one confusion matrix accumulated over every pixel
of every image (void pixels, gt == 255, skipped), then IoU = TP / (TP + FP + FN) per class.
A class absent from both the ground truth and the predictions has IoU 0/0 = NaN and is left
out of the mean (``nanmean``), exactly as IRN's eval_cam does. Nothing here averages
per-image IoUs, which would weight a small image as much as a large one.

The CAM threshold sweep is done in one pass: a pixel's prediction at threshold t is its
arg-max foreground class when the max foreground score is > t, else background, so knowing
how many thresholds lie below the max (a "bucket") fixes the prediction at every threshold.
"""
from __future__ import annotations

import numpy as np

from csdseg.data.classes import IGNORE_INDEX


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [C, C] int64, rows = ground truth, columns = prediction; gt == 255 is skipped.

    ``gt`` and ``pred`` are integer arrays of the same shape holding 0..C-1 (gt also 255).
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"gt shape {gt.shape} != prediction shape {pred.shape}")
    valid = gt != IGNORE_INDEX
    g = gt[valid].astype(np.int64)
    p = pred[valid].astype(np.int64)
    if g.size and (g.min() < 0 or g.max() >= num_classes):
        raise ValueError(f"ground truth holds values outside 0..{num_classes - 1} and 255")
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"prediction holds values outside 0..{num_classes - 1}")
    counts = np.bincount(g * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """IoU [C] = TP / (TP + FP + FN); NaN where a class is in neither gt nor prediction."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    denom = conf.sum(axis=1) + conf.sum(axis=0) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / denom


def mean_iou(conf: np.ndarray) -> float:
    iou = iou_per_class(conf)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(conf: np.ndarray) -> float:
    total = conf.sum()
    return float(np.trace(conf) / total) if total else float("nan")


def precision_recall(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision TP / (TP + FP) and recall TP / (TP + FN), each [C] (NaN where 0/0)."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / conf.sum(axis=0), tp / conf.sum(axis=1)


# --------------------------------------------------------------------------------------------
# Multi-label classification


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall step curve, as sklearn's average_precision_score.

    ``y_true`` [N] in {0, 1}, ``scores`` [N]. Tied scores form one operating point. NaN when
    there is no positive (sklearn warns and returns a meaningless value there).
    """
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # end of each distinct score
    tps = np.cumsum(y)[last_of_tie]
    precision = tps / (last_of_tie + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def mean_average_precision(labels: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray]:
    """mAP over classes with a positive, and the per-class AP [K]; ``labels``/``scores`` [N, K]."""
    labels = np.asarray(labels)
    scores = np.asarray(scores)
    ap = np.array([average_precision(labels[:, k], scores[:, k]) for k in range(labels.shape[1])])
    return (float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")), ap


# --------------------------------------------------------------------------------------------
# CAMs -> labels


def cam_to_labels(high_res: np.ndarray, keys: np.ndarray, threshold: float) -> np.ndarray:
    """IRN's conversion: [len(keys), H, W] scores -> labels [H, W] (0 = background).

    A constant background channel ``threshold`` goes first, so on a tie argmax picks background.
    """
    cams = np.pad(high_res, ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=threshold)
    lookup = np.pad(np.asarray(keys, dtype=np.int64) + 1, (1, 0), mode="constant")
    return lookup[np.argmax(cams, axis=0)]


def fg_max_and_class(high_res: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Max foreground score [H, W] and its class [H, W] (1..K; -inf and 0 when keys is empty)."""
    if len(keys) == 0:
        shape = high_res.shape[1:]
        return np.full(shape, -np.inf, dtype=high_res.dtype), np.zeros(shape, dtype=np.int64)
    arg = np.argmax(high_res, axis=0)
    score = np.take_along_axis(high_res, arg[None], axis=0)[0]
    return score, np.asarray(keys, dtype=np.int64)[arg] + 1


def threshold_buckets(score: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many ``thresholds`` (ascending) are strictly below each score: [H, W] int64.

    Thresholds are cast to the score dtype first, since IRN compares against a background
    channel padded into the (usually float32) CAM array.
    """
    cast = np.asarray(thresholds).astype(score.dtype)
    return np.searchsorted(cast, score, side="left").astype(np.int64)


def bucket_histogram(gt: np.ndarray, cls: np.ndarray, bucket: np.ndarray, num_classes: int,
                     num_thresholds: int) -> np.ndarray:
    """Counts [C, C, T + 1] of valid pixels by (gt, fg class, bucket); gt == 255 skipped."""
    valid = gt != IGNORE_INDEX
    nb = num_thresholds + 1
    index = (gt[valid].astype(np.int64) * num_classes + cls[valid]) * nb + bucket[valid]
    counts = np.bincount(index, minlength=num_classes * num_classes * nb)
    return counts.reshape(num_classes, num_classes, nb)


def predicted_counts(hist: np.ndarray) -> np.ndarray:
    """From bucket counts [..., C, T + 1] to counts [..., C, T] of pixels predicted as the class.

    At threshold j a pixel in bucket b is its fg class when j < b, i.e. b in j+1..T.
    """
    above = np.cumsum(hist[..., ::-1], axis=-1)[..., ::-1]  # above[..., b] = sum over b' >= b
    return above[..., 1:]


def sweep_confusions(hist: np.ndarray) -> np.ndarray:
    """Per-threshold confusion matrices [T, C, C] from :func:`bucket_histogram` counts.

    Rows are independent: counts of some gt classes only, [R, C, T + 1], give [T, R, C].
    """
    fg = predicted_counts(hist)  # [C_gt, C_cls, T]: pixels labelled with their fg class
    rest = hist.sum(axis=-1)[..., None] - fg  # the other pixels are labelled background
    conf = np.moveaxis(fg, -1, 0).copy()  # [T, C_gt, C_pred]
    conf[:, :, 0] += np.moveaxis(rest.sum(axis=1), -1, 0)
    return conf


# --------------------------------------------------------------------------------------------
# Single- vs multi-label images, and confusion between co-occurring classes


def label_group(present: np.ndarray) -> int | None:
    """0 for a single-label image (one image-level class), 1 for multi-label (>= 2), else None."""
    n = len(present)
    return None if n == 0 else (0 if n == 1 else 1)


def add_cooccurrence(num: np.ndarray, den: np.ndarray, seen: np.ndarray, rows: np.ndarray,
                     present: np.ndarray) -> None:
    """Add one image's counts, in place, for each ordered pair (a, b), a != b, of its classes.

    ``present`` [n] holds the image's class indices 0..K-1 and ``rows`` [..., n, C] the rows
    ``present + 1`` of its confusion matrix [..., C, C] (C = K + 1, background at 0; leading
    axes, e.g. thresholds, are kept). Adds to ``num`` [..., K, K] the pixels with gt == a
    predicted as b, to ``den`` [..., K, K] the pixels with gt == a, and 1 to ``seen`` [K, K]
    (images labelled with both a and b). Only the image's own pairs are touched.
    """
    rows = np.asarray(rows)
    p = np.asarray(present, dtype=np.int64).reshape(-1)
    if rows.shape[-2] != p.size:
        raise ValueError(f"{rows.shape[-2]} confusion rows for {p.size} classes")
    if p.size < 2:
        return
    off = ~np.eye(p.size, dtype=bool)  # a != b
    a, b = np.ix_(p, p)
    num[..., a, b] += rows[..., p + 1] * off  # [..., n, n]: gt a (row), predicted b (column)
    den[..., a, b] += rows.sum(axis=-1)[..., :, None] * off
    seen[a, b] += off


def cooccurrence_shares(num: np.ndarray, den: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Share [K, K] of gt-a pixels predicted as b over images labelled with both a and b.

    ``num``, ``den``, ``seen`` [K, K] are summed over images by :func:`add_cooccurrence`. NaN
    where a and b never co-occur (``seen`` == 0), on the diagonal, or where ``den`` == 0.
    """
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = num / den
    share[(np.asarray(seen) == 0) | (den == 0)] = np.nan
    return share
