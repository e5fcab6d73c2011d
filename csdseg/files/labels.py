"""Label PNGs: the one writer and the one reader of every label map a stage makes or reads.

A label PNG holds one class index per pixel: 0 = background, 1..K = the K classes, 255 = void
(ignored, or "uncertain" in confident labels). csdseg writes them as palette ('P' mode) PNGs
with the VOC colours (:func:`csdseg.report.visualize.palette_png`), so the index is the pixel value
and any viewer shows the classes in colour; it reads palette and L-mode PNGs alike.

Files in this format: ``ir_label/`` (make-ir-label; ``csd_masks/``: make-csd-masks),
``sem_seg/`` (make-sem-seg), and any folder eval-sem-seg scores. Ground-truth masks are the same
format but belong to the dataset (:func:`csdseg.data.source.read_mask`).

Every problem raises :class:`LabelFileError` (a :class:`~csdseg.data.source.DataError`, so the
CLI prints it as one line) naming the file and the fix: ``made_by`` is the command that remakes
it. Writes are atomic (:func:`csdseg.files.atomic.atomic_save_png`): a crash never leaves half
a PNG.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from csdseg.data.classes import IGNORE_INDEX
from csdseg.data.source import DataError
from csdseg.files.atomic import atomic_save_png
from csdseg.report.visualize import palette_png


class LabelFileError(DataError):
    """A label PNG is missing, unreadable or malformed; the message names the file and the fix."""


def _fix(made_by: str | None) -> str:
    if made_by:
        return f"delete it and rerun `csdseg {made_by}` (which remakes only the missing files)"
    return "replace it with a palette or L-mode PNG of class indices (0, 1..K, 255)"


def value_problem(labels: np.ndarray, num_classes: int | None) -> str | None:
    """What is wrong with the values of a label map [H, W], or None.

    Class indices are integers in 0..K (``num_classes`` = K; 0..254 when K is not known) or
    255; anything else is most often a colour PNG (RGB values) or a map of another dataset.
    """
    if labels.ndim != 2:
        return f"must be a single-channel [H, W] map (palette or L PNG), got shape {labels.shape}"
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.bool_)):
        return f"must hold integer class indices, got {labels.dtype}"
    top = IGNORE_INDEX - 1 if num_classes is None else num_classes
    bad = ((labels < 0) | (labels > top)) & (labels != IGNORE_INDEX)
    if bad.any():
        shown = sorted(set(np.unique(labels[bad]).tolist()))[:5]
        return (f"holds values {shown} outside 0..{top} and {IGNORE_INDEX}; label PNGs hold class "
                "indices (0 background, 1..K, 255 void), not colours")
    return None


def size_problem(shape: Sequence[int], size: Sequence[int] | None) -> str | None:
    """Why a map of ``shape`` does not fit an image of ``size`` (H, W), or None."""
    if size is None or tuple(shape) == tuple(size):
        return None
    return (f"is {shape[0]} x {shape[1]} (H x W) but its image is {size[0]} x {size[1]}; the "
            "labels were made for other images")


def save_label_png(path: str | Path, labels: np.ndarray, num_classes: int | None = None) -> None:
    """Write a label map [H, W] (values 0..K or 255) as a VOC-palette PNG, atomically.

    A bad map is refused before anything is written (ValueError naming the target), so a
    bug upstream never leaves a file that a later stage would trust.
    """
    labels = np.asarray(labels)
    problem = value_problem(labels, num_classes)
    if problem:
        raise ValueError(f"refusing to write label PNG {path}: the map {problem}")
    atomic_save_png(path, palette_png(labels))


def read_label_png(path: str | Path, num_classes: int | None = None,
                   size: Sequence[int] | None = None, made_by: str | None = None,
                   what: str = "label PNG") -> np.ndarray:
    """Read a label PNG as uint8 [H, W] and check it.

    ``num_classes`` (K): values must be 0..K or 255. ``size`` (H, W of its image): the map must
    match it. ``made_by``: the ``csdseg`` command that makes the file, named in the fix.
    ``what`` names the file's role in the messages ("confident labels", "pseudo-mask"...).
    """
    path = Path(path)
    if not path.is_file():
        fix = f"run `csdseg {made_by}` first" if made_by else "check the folder"
        raise LabelFileError(f"{what} {path} does not exist; {fix}")
    try:
        with Image.open(path) as image:
            labels = np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise LabelFileError(f"{what} {path} is corrupt or not a PNG ({exc}); "
                             f"{_fix(made_by)}") from None
    problem = value_problem(labels, num_classes) or size_problem(labels.shape, size)
    if problem:
        raise LabelFileError(f"{what} {path} {problem}; {_fix(made_by)}")
    return labels.astype(np.uint8, copy=False)
