"""Layouts of the synthetic dataset: which classes an image holds and where their pixels are.

Class sets are real VOC train_aug label vectors (capped at MAX_CLASSES), so the single-label
share (59%) and the pairwise co-occurrence of VOC are reproduced. Procedural layouts draw each
object as a polygon (ellipse, rounded rectangle, random polygon or radial blob) of 5-40% of the
image area; real layouts resize a VOC-style mask to S x S (nearest neighbour), and the folder
of real masks is split once between train and val (:func:`partition_layouts`), so val holds
out object layouts.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from csdseg.data.classes import IGNORE_INDEX
from csdseg.data.source import DataError, read_mask, read_split
from csdseg.data.voc import BUILTIN, load_label_file

MAX_CLASSES = 4  # and at most 4 objects per procedural image
AREA_RANGE = (0.05, 0.40)  # object area / image area, rasterised
_AREA_SAMPLE = (0.06, 0.38)  # sampled targets: leaves room for the <=4% rasterisation error
_AREA_BUDGET = 0.9  # the targets of one image sum to at most this, so occlusion stays partial
MIN_VISIBLE = 0.5  # an object keeps at least half of its pixels when later ones are drawn
P_EXTRA = 0.35  # chance of one more instance of a present class, repeated while < 4 objects
SHAPES = ("ellipse", "rounded_rect", "polygon", "blob")
LAYOUT_STREAM = 2  # rng stream of the layout partition (the images use 0 for train, 1 for val)


@lru_cache(maxsize=1)
def voc_label_vectors() -> np.ndarray:
    """The VOC train_aug image labels, bool [10582, 20] (from the shipped IRN label file)."""
    table = load_label_file(Path(str(BUILTIN / "cls_labels.npy")), 20)
    ids = read_split(Path(str(BUILTIN / "train_aug.txt")))
    return np.stack([table[i] for i in ids]) > 0


def sample_classes(rng: np.random.Generator) -> list[int]:
    """A class set (0-based VOC indices, sorted): a random train_aug label vector, capped."""
    table = voc_label_vectors()
    present = np.flatnonzero(table[rng.integers(len(table))])
    if len(present) > MAX_CLASSES:
        present = np.sort(rng.choice(present, MAX_CLASSES, replace=False))
    return [int(c) for c in present]


def _contour(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A closed outline around the origin, float64 [N, 2] (x, y), unit-ish scale."""
    aspect = rng.uniform(0.6, 1.0)
    if kind == "ellipse":
        theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        points = np.stack([np.cos(theta), aspect * np.sin(theta)], 1)
    elif kind == "rounded_rect":
        w, h = 1.0, aspect
        r = rng.uniform(0.15, 0.5) * h
        corners = [(w - r, h - r, 0.0), (-w + r, h - r, 0.5), (-w + r, -h + r, 1.0), (w - r, -h + r, 1.5)]
        arc = np.linspace(0, np.pi / 2, 8)
        points = np.concatenate([
            np.stack([cx + r * np.cos(arc + start * np.pi), cy + r * np.sin(arc + start * np.pi)], 1)
            for cx, cy, start in corners])
    elif kind == "polygon":
        k = int(rng.integers(3, 9))
        theta = 2 * np.pi * (np.arange(k) + rng.uniform(-0.3, 0.3, k)) / k
        radius = rng.uniform(0.6, 1.0, k)
        points = np.stack([radius * np.cos(theta), aspect * radius * np.sin(theta)], 1)
    elif kind == "blob":
        theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        radius = np.ones_like(theta)
        for harmonic in range(2, 6):
            radius += rng.uniform(0, 0.5 / harmonic) * np.cos(harmonic * theta + rng.uniform(0, 2 * np.pi))
        radius = np.maximum(radius, 0.3)
        points = np.stack([radius * np.cos(theta), aspect * radius * np.sin(theta)], 1)
    else:
        raise ValueError(f"unknown shape {kind!r}; allowed: {', '.join(SHAPES)}")
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return points @ rotation.T


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _rasterise(points: np.ndarray, size: int) -> np.ndarray:
    """Fill a polygon given in pixel units (pixel centres at i + 0.5): bool [S, S]."""
    canvas = np.zeros((size, size), np.uint8)
    fixed = np.round((points - 0.5) * 16).astype(np.int32)  # cv2 puts pixel centres at integers
    cv2.fillPoly(canvas, [fixed], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def draw_object(rng: np.random.Generator, size: int, area: float) -> np.ndarray:
    """One object of about ``area`` * S^2 pixels at a random place, fully inside: bool [S, S]."""
    contour = _contour(SHAPES[rng.integers(len(SHAPES))], rng)
    contour *= np.sqrt(area * size * size / _polygon_area(contour))
    extent = contour.max(0) - contour.min(0)
    if extent.max() > size - 2:  # too long to fit: shrink (area stays well above the minimum)
        contour *= (size - 2) / extent.max()
    target = _polygon_area(contour)
    low, high = contour.min(0), contour.max(0)
    offset = rng.uniform(-low + 1, size - 1 - high + 1e-9)
    points = contour + offset
    mask = _rasterise(points, size)
    for _ in range(3):  # rasterisation gains or loses a rim; rescale until within 4%
        drawn = int(mask.sum())
        if drawn and abs(drawn - target) <= 0.04 * target:
            break
        centre = points.mean(0)
        points = centre + (points - centre) * np.sqrt(target / max(drawn, 1))
        mask = _rasterise(points, size)
    return mask


def _sample_areas(rng: np.random.Generator, count: int) -> np.ndarray:
    low, high = _AREA_SAMPLE
    areas = rng.uniform(low, high, count)
    if areas.sum() > _AREA_BUDGET:
        areas = low + (areas - low) * (_AREA_BUDGET - low * count) / (areas.sum() - low * count)
    return areas


def procedural_layout(rng: np.random.Generator, size: int,
                      classes: list[int]) -> list[tuple[int, np.ndarray]]:
    """Objects for ``classes`` (one each, plus random extras up to 4), in painting order.

    Returns ``[(class index, full object mask bool [S, S])]``; later objects occlude earlier
    ones, but each keeps at least MIN_VISIBLE of its pixels (placement is retried, shrinking
    the object, and an extra instance that cannot be placed is dropped).
    """
    order = list(rng.permutation(classes))
    while len(order) < MAX_CLASSES and rng.random() < P_EXTRA:
        order.append(int(rng.choice(classes)))
    areas = _sample_areas(rng, len(order))
    owner = np.full((size, size), -1, np.int16)  # which object each pixel shows
    objects: list[tuple[int, np.ndarray]] = []
    sizes: list[int] = []
    for n, (cls, area) in enumerate(zip(order, areas)):
        best, best_score = None, -1.0
        current = np.bincount(owner.ravel() + 1, minlength=len(objects) + 1)[1:]
        for attempt in range(24):
            if attempt and attempt % 8 == 0:
                area = max(_AREA_SAMPLE[0], area * 0.8)
            mask = draw_object(rng, size, area)
            covered = np.bincount(owner[mask] + 1, minlength=len(objects) + 1)[1:]
            visible = current - covered
            score = float((visible / np.maximum(sizes, 1)).min()) if objects else 1.0
            if score > best_score:
                best, best_score = mask, score
            if score >= MIN_VISIBLE:
                break
        if best_score < MIN_VISIBLE and n >= len(classes):
            continue  # an extra instance: leave it out rather than hide an object
        owner[best] = len(objects)
        objects.append((int(cls), best))
        sizes.append(int(best.sum()))
    return objects


def paint_labels(objects: list[tuple[int, np.ndarray]], size: int) -> np.ndarray:
    """Label map uint8 [S, S]: 0 background, class index + 1 where an object shows."""
    label = np.zeros((size, size), np.uint8)
    for cls, mask in objects:
        label[mask] = cls + 1
    return label


def add_void_border(label: np.ndarray) -> np.ndarray:
    """Mark the 1-px inner rim of every object as void (255), as VOC marks outlines."""
    padded = np.pad(label, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    differs = ((padded[:-2, 1:-1] != centre) | (padded[2:, 1:-1] != centre)
               | (padded[1:-1, :-2] != centre) | (padded[1:-1, 2:] != centre))
    out = label.copy()
    out[differs & (label > 0)] = IGNORE_INDEX
    return out


def load_layout(path: Path, size: int, num_classes: int = 20) -> np.ndarray:
    """A real mask resized to S x S with nearest neighbour: uint8 [S, S] (0, 1..K, 255)."""
    mask = read_mask(path, num_classes)
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)


def fill_void(label: np.ndarray) -> np.ndarray:
    """Give each void pixel a neighbouring label, so the image can be painted under it."""
    value = np.where(label == IGNORE_INDEX, 0, label.astype(np.int16) + 1).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(label.shape[0]):
        hole = value == 0
        if not hole.any():
            break
        grown = cv2.dilate(value, kernel)
        value[hole] = grown[hole]
    return np.where(value == 0, 1, value).astype(np.uint8) - 1  # all-void mask -> background


def partition_layouts(folder: str | Path, n_train: int, n_val: int,
                      seed: int) -> dict[str, list[Path]]:
    """Split the ``*.png`` masks of ``folder`` into disjoint train and val pools.

    The masks, sorted by name, are shuffled with ``numpy.random.default_rng([seed, 2])``; val
    takes the first ``round(N * n_val / (n_train + n_val))`` (halves round up), train the rest.
    Each pool is returned sorted by name. A pool that would be empty raises :class:`DataError`.
    """
    paths = sorted(Path(folder).glob("*.png"))
    total = n_train + n_val
    n_val_masks = (2 * len(paths) * n_val + total) // (2 * total)  # round half up, exactly
    if not 0 < n_val_masks < len(paths):
        needed = max(2, -(-total // (2 * n_val)), total // (2 * n_train) + 1)
        raise DataError(
            f"--layouts-from {folder}: {len(paths)} .png masks split in proportion to "
            f"{n_train} train : {n_val} val images give {len(paths) - n_val_masks} train and "
            f"{n_val_masks} val masks, but each split needs its own (val holds out layouts); "
            f"put at least {needed} masks in the folder or make --n-train and --n-val less uneven")
    order = np.random.default_rng([int(seed), LAYOUT_STREAM]).permutation(len(paths))
    val = {int(i) for i in order[:n_val_masks]}
    return {"train": [p for i, p in enumerate(paths) if i not in val],
            "val": [p for i, p in enumerate(paths) if i in val]}
