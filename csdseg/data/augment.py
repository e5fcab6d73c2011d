"""Training augmentations: one object per recipe, shared by every dataset that augments.

A recipe is called as ``recipe(img, rng, masks) -> (x, masks)``: ``img`` uint8 [H, W, 3],
``masks`` a tuple of uint8 [H, W] label maps that follow the image through every geometric
step (nearest-neighbour, padded with 255), ``x`` float32 [3, S, S] normalised with the
ImageNet mean/std, each mask uint8 [S, S]. Every random choice is drawn from ``rng`` in a
fixed order, so a sample is a pure function of (seed, epoch, index) -- and two datasets that
share a recipe object (the CAM classifier's and CSD's X_m, say) produce the same sample bit
for bit. That equality is what makes "CSD vs its control" compare CSD and nothing else.

Recipes:
- :class:`ResizeLongCrop` -- IRN's train_cam: long side to a random length, flip, crop;
- :class:`ScaleCrop` -- IRN's train_irn and DeepLab: random scale factor, flip, crop;
- :class:`RandomResizedCrop` -- DeiT/MCTformer: random area and aspect, resized, flip.

Normalising is per pixel, so the crop recipes crop the uint8 image first (tracking which
pixels are padding) and normalise only the crop through a 256-entry table per channel: the
same float32 values as normalising the whole image, at a fraction of the cost.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from csdseg.data.transforms import (IGNORE_INDEX, crop_window, normalize,
                                    random_hflip, random_resize_long, random_resized_crop,
                                    random_scale)

if TYPE_CHECKING:
    from csdseg.config import TrainConfig

Masks = tuple[np.ndarray, ...]

# [3, 256]: normalize() of every uint8 value, per channel (exactly the float32 it computes)
_NORM_LUT = normalize(np.tile(np.arange(256, dtype=np.uint8)[None, :, None], (1, 1, 3)))[:, 0]
# the same tables as OpenCV wants them: cv2.LUT is a plain gather, ~10x np.take on uint8 indices
_CV_LUT = [np.ascontiguousarray(_NORM_LUT[c].reshape(256, 1)) for c in range(3)]


class Augment(Protocol):
    crop_size: int

    def __call__(self, img: np.ndarray, rng: np.random.Generator,
                 masks: Masks = ()) -> tuple[np.ndarray, Masks]: ...


def normalize_lut(chw: np.ndarray) -> np.ndarray:
    """uint8 [3, H, W] -> float32 [3, H, W], the values :func:`normalize` gives."""
    x = np.empty(chw.shape, np.float32)
    for c in range(3):
        x[c] = cv2.LUT(np.ascontiguousarray(chw[c]), _CV_LUT[c])
    return x


def crop_and_normalize(img: np.ndarray, masks: Masks, size: int, rng: np.random.Generator
                       ) -> tuple[np.ndarray, Masks]:
    """IRN's random crop (or pad) of ``img`` and ``masks`` to ``size``, then normalise.

    The image is padded with 0 *after* normalising (IRN crops the normalised image), masks
    with 255. Draws from ``rng`` exactly as :func:`random_crop` does. Only the window is
    normalised, straight from the HWC image into the zeroed CHW output (no transposed copy,
    no padding mask: the padding is the rectangle's complement).
    """
    top, left, src_top, src_left, ch, cw = crop_window(*img.shape[:2], size, rng)
    window = img[src_top:src_top + ch, src_left:src_left + cw]
    x = np.zeros((3, size, size), np.float32)
    for c in range(3):
        x[c, top:top + ch, left:left + cw] = cv2.LUT(np.ascontiguousarray(window[:, :, c]),
                                                     _CV_LUT[c])
    out = []
    for m in masks:
        container = np.full((size, size), IGNORE_INDEX, dtype=m.dtype)
        container[top:top + ch, left:left + cw] = m[src_top:src_top + ch, src_left:src_left + cw]
        out.append(container)
    return x, tuple(out)


@dataclass(frozen=True)
class ResizeLongCrop:
    """IRN's CAM training crop: resize the long side to U[lo, hi], flip, crop ``crop_size``."""

    crop_size: int
    resize_long: tuple[int, int] = (320, 640)
    hflip: bool = True

    def __call__(self, img: np.ndarray, rng: np.random.Generator,
                 masks: Masks = ()) -> tuple[np.ndarray, Masks]:
        img, masks = random_resize_long(img, *self.resize_long, rng, masks)
        if self.hflip:
            img, masks = random_hflip(img, rng, masks)
        return crop_and_normalize(img, masks, self.crop_size, rng)


@dataclass(frozen=True)
class ScaleCrop:
    """IRN's train_irn and DeepLab's crop: rescale by U[lo, hi], flip, crop ``crop_size``."""

    crop_size: int
    scale_range: tuple[float, float] = (0.5, 1.5)
    hflip: bool = True

    def __call__(self, img: np.ndarray, rng: np.random.Generator,
                 masks: Masks = ()) -> tuple[np.ndarray, Masks]:
        img, masks = random_scale(img, *self.scale_range, rng, masks)
        if self.hflip:
            img, masks = random_hflip(img, rng, masks)
        return crop_and_normalize(img, masks, self.crop_size, rng)


@dataclass(frozen=True)
class RandomResizedCrop:
    """DeiT's (MCTformer's) training crop: a random area in ``scale`` and aspect in ``ratio``
    resized to ``crop_size`` (bicubic; masks nearest), then flip (no RandAugment/erasing)."""

    crop_size: int
    hflip: bool = True
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __call__(self, img: np.ndarray, rng: np.random.Generator,
                 masks: Masks = ()) -> tuple[np.ndarray, Masks]:
        img, masks = random_resized_crop(img, self.crop_size, rng, masks, self.scale, self.ratio)
        if self.hflip:
            img, masks = random_hflip(img, rng, masks)
        x = normalize_lut(np.ascontiguousarray(img.transpose(2, 0, 1)))
        return x, tuple(np.ascontiguousarray(m) for m in masks)


# train.augment -> the CAM classifier's recipe
CAM_RECIPES = {"irn": "resize-long + flip + crop (IRN)", "mct": "random-resized crop + flip (DeiT)"}


def cam_augment(train: "TrainConfig") -> Augment:
    """The recipe ``train-cam`` (and CSD's X_m and X_s) uses for ``train.augment``."""
    if train.augment == "irn":
        lo, hi = train.resize_long
        return ResizeLongCrop(train.crop_size, (int(lo), int(hi)), train.hflip)
    if train.augment == "mct":
        return RandomResizedCrop(train.crop_size, train.hflip)
    raise ValueError(f"train.augment must be one of {', '.join(CAM_RECIPES)}, "
                     f"got '{train.augment}'")


__all__ = ["Augment", "ResizeLongCrop", "ScaleCrop", "RandomResizedCrop", "cam_augment",
           "crop_and_normalize", "normalize_lut", "CAM_RECIPES"]
