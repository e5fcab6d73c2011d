"""Context pairing (``csd.pair_by=context``): csdseg's extension beyond the paper.

Algorithm 1 draws the pasted single-label image X_s by class co-occurrence, which has nothing to
pair where most images hold one object (MSRC: 472 of 494). Here X_s is instead a single-label
image of *another* class whose background looks like X_m's (sheep-on-grass for cow-on-grass),
so the bg paste swaps the object onto a context of the same kind and the terms ask the
classifier to tell the object from that context. Why colour: docs/csd.md, "Context pairing".

- **Descriptor** (once per image, when the CSD dataset is built): a coarse joint HSV histogram,
  :data:`HSV_BINS` bins, L1-normalised, of the pixels of the image's confident background M_bg
  (the baseline's masks, label 0). Where M_bg covers less than :data:`MIN_BG_SHARE` of the
  image (the object fills the frame, or the CRF kept no confident background), the complement
  of its foreground (background and uncertain pixels) stands in, and the whole image where even
  that is empty: every image gets a descriptor, so every sample can be paired.
- **Similarity**: histogram intersection, sum_d min(h_a[d], h_b[d]) in [0, 1] (1: the same
  colour distribution); it ignores bins one side lacks, so a partly seen context still matches.
- **Draw**: among the usable single-label images (non-empty M_fg) of a class outside X_m's (for
  ``exclude_own``; otherwise all but X_m itself), the ``k`` most similar (ties broken by index,
  so the ranking is a pure function of the data), one of them uniformly with the sample's
  seeded generator. No candidate: None, the sample trains without CSD terms (as a co-occurrence
  draw with no eligible class).
"""
from __future__ import annotations

import cv2
import numpy as np

from csdseg.ops.confident_labels import split_fg_bg
from csdseg.engine.progress import progress_bar

# hue x saturation x value: 8 hues tell grass from sky from water from road; 3 x 3 levels of
# saturation and brightness separate grey road from blue sky without making the descriptor
# sensitive to shading (72 bins in all)
HSV_BINS = (8, 3, 3)
HSV_RANGES = [0, 180, 0, 256, 0, 256]  # OpenCV's 8-bit HSV: hue in [0, 180)
MIN_BG_SHARE = 0.01  # a background smaller than this is too few pixels to describe a context


def context_region(label: np.ndarray) -> np.ndarray:
    """bool [H, W]: the pixels that describe an image's context, from its confident label map
    (0 bg, 1..K class, 255 uncertain): M_bg, else not-M_fg, else the whole image."""
    fg, bg = split_fg_bg(label)
    min_pixels = MIN_BG_SHARE * label.size
    if bg.sum() >= min_pixels:
        return bg
    rest = ~fg
    return rest if rest.sum() >= min_pixels else np.ones_like(fg)


def background_histogram(img: np.ndarray, label: np.ndarray) -> np.ndarray:
    """RGB uint8 [H, W, 3] and its label map [H, W] -> float32 [prod(HSV_BINS)], sum 1."""
    hsv = cv2.cvtColor(np.ascontiguousarray(img, dtype=np.uint8), cv2.COLOR_RGB2HSV)
    mask = context_region(label).astype(np.uint8)
    hist = cv2.calcHist([hsv], [0, 1, 2], mask, list(HSV_BINS), HSV_RANGES).reshape(-1)
    return (hist / max(float(hist.sum()), 1.0)).astype(np.float32)


def histogram_intersection(h: np.ndarray, others: np.ndarray) -> np.ndarray:
    """h [D], others [N, D] (L1-normalised) -> [N] similarities in [0, 1]."""
    return np.minimum(others, h[None]).sum(1)


def context_descriptors(source, masks) -> np.ndarray:
    """float32 [N, D]: every image's descriptor, reading each image and mask once (a Source and
    a MaskStore, or anything with their ``ids`` / ``load_image`` / ``load``)."""
    out = np.zeros((len(source.ids), int(np.prod(HSV_BINS))), np.float32)
    for n, image_id in enumerate(progress_bar(source.ids, desc="csd: context descriptors",
                                              leave=False)):
        out[n] = background_histogram(source.load_image(image_id), masks.load(image_id))
    return out


class ContextSampler:
    """Draws (class c, index of a single-label image) for sample ``index`` by shared context.

    ``labels`` [N, K] multi-hot, ``usable`` bool [N] (single-label images with a non-empty fg
    mask), ``descriptors`` [N, D] from :func:`context_descriptors`, ``k`` >= 1 the number of
    nearest contexts drawn among. The same interface as CooccurrenceSampler's :meth:`pair`.
    """

    def __init__(self, labels: np.ndarray, usable: np.ndarray, descriptors: np.ndarray,
                 k: int = 5) -> None:
        if k < 1:
            raise ValueError(f"csd.context_k must be >= 1, got {k}")
        self.labels = np.asarray(labels) > 0
        if len(descriptors) != len(self.labels):
            raise ValueError(f"{len(descriptors)} descriptors for {len(self.labels)} images")
        self.descriptors, self.k = np.asarray(descriptors, np.float32), k
        single = self.labels.sum(1) == 1
        self.candidates = np.flatnonzero(np.asarray(usable, bool) & single)
        self.cand_class = self.labels[self.candidates].argmax(1)
        # read by train-cam's log line: classes never pasted are those without a candidate
        self.eligible = np.bincount(self.cand_class, minlength=self.labels.shape[1]) > 0

    @property
    def num_classes(self) -> int:
        return self.labels.shape[1]

    def ranked(self, index: int, classes: np.ndarray, exclude_own: bool = False) -> np.ndarray:
        """The candidate images for sample ``index``, most similar context first (int [n])."""
        keep = self.candidates != index
        if exclude_own:
            keep &= ~np.isin(self.cand_class, np.asarray(classes).reshape(-1))
        pool = self.candidates[keep]
        sim = histogram_intersection(self.descriptors[index], self.descriptors[pool])
        return pool[np.argsort(-sim, kind="stable")]  # stable: equal similarities by index

    def pair(self, index: int, classes: np.ndarray, rng: np.random.Generator,
             exclude_own: bool = False) -> tuple[int, int] | None:
        """(pasted class c, index of X_s), or None when no candidate is left."""
        nearest = self.ranked(index, classes, exclude_own)[:self.k]
        if not len(nearest):
            return None
        j = int(nearest[rng.integers(len(nearest))])
        return int(self.labels[j].argmax()), j
