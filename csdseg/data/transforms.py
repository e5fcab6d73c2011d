"""Image/mask augmentations as plain functions of NumPy arrays and an explicit RNG.

Every random choice takes a ``numpy.random.Generator`` so that a sample's augmentation is a
pure function of (seed, epoch, index) -- what makes exact resume possible. Masks travel with
their image through every geometric step (nearest-neighbour, padded with 255 = void).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from csdseg.data.classes import IGNORE_INDEX

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def normalize(img: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [3, H, W], ImageNet mean/std."""
    out = (img.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def denormalize(x: np.ndarray) -> np.ndarray:
    """float32 [3, H, W] -> uint8 [H, W, 3] (for pictures)."""
    img = x.transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def rescale(arr: np.ndarray, scale: float, nearest: bool = False) -> np.ndarray:
    """Resize by ``scale``: bicubic for images (as IRN), nearest for label maps."""
    h, w = arr.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return arr
    resample = Image.NEAREST if nearest else Image.BICUBIC
    return np.asarray(Image.fromarray(arr).resize(size, resample))


def resize_to(arr: np.ndarray, hw: tuple[int, int], nearest: bool = False,
              bicubic: bool = False) -> np.ndarray:
    resample = Image.NEAREST if nearest else (Image.BICUBIC if bicubic else Image.BILINEAR)
    return np.asarray(Image.fromarray(arr).resize((hw[1], hw[0]), resample))


def random_resize_long(img: np.ndarray, lo: int, hi: int, rng: np.random.Generator,
                       masks: tuple[np.ndarray, ...] = ()) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Rescale so the long side is a random integer in [lo, hi] (IRN's resize_long)."""
    target = int(rng.integers(lo, hi + 1))
    scale = target / max(img.shape[:2])
    return rescale(img, scale), tuple(rescale(m, scale, nearest=True) for m in masks)


def random_scale(img: np.ndarray, lo: float, hi: float, rng: np.random.Generator,
                 masks: tuple[np.ndarray, ...] = ()) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Rescale by a uniform factor in [lo, hi] (IRN's train_irn / DeepLab's random scale)."""
    scale = float(rng.uniform(lo, hi))
    return rescale(img, scale), tuple(rescale(m, scale, nearest=True) for m in masks)


def random_hflip(img: np.ndarray, rng: np.random.Generator,
                 masks: tuple[np.ndarray, ...] = ()) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    if rng.random() < 0.5:
        return img[:, ::-1].copy(), tuple(m[:, ::-1].copy() for m in masks)
    return img, masks


def crop_window(h: int, w: int, size: int, rng: np.random.Generator
                ) -> tuple[int, int, int, int, int, int]:
    """IRN's random crop placement of an h x w array in a size x size container:
    (container top, container left, source top, source left, rows, columns)."""
    ch, cw = min(size, h), min(size, w)
    w_space, h_space = w - size, h - size
    cont_left, img_left = (0, int(rng.integers(w_space + 1))) if w_space > 0 else (int(rng.integers(-w_space + 1)), 0)
    cont_top, img_top = (0, int(rng.integers(h_space + 1))) if h_space > 0 else (int(rng.integers(-h_space + 1)), 0)
    return cont_top, cont_left, img_top, img_left, ch, cw


def random_crop(arrays: list[np.ndarray], size: int, fills: list[float], rng: np.random.Generator
                ) -> list[np.ndarray]:
    """Crop (or pad, when smaller) every array to ``size`` x ``size`` at one random offset.

    As IRN: a side shorter than ``size`` is placed at a random offset in a container filled
    with ``fills[i]``; a longer side is cropped at a random offset. Arrays are [H, W] or
    [C, H, W] (channels first) and share H, W.
    """
    cont_top, cont_left, img_top, img_left, ch, cw = crop_window(*arrays[0].shape[-2:], size, rng)
    out = []
    for arr, fill in zip(arrays, fills):
        container = np.full(arr.shape[:-2] + (size, size), fill, dtype=arr.dtype)
        container[..., cont_top:cont_top + ch, cont_left:cont_left + cw] = \
            arr[..., img_top:img_top + ch, img_left:img_left + cw]
        out.append(container)
    return out


def random_resized_crop(img: np.ndarray, size: int, rng: np.random.Generator,
                        masks: tuple[np.ndarray, ...] = (), scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)
                        ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """DeiT/MCTformer's training crop: a random area (``scale``) and aspect (``ratio``) of the
    image, resized to ``size`` x ``size`` (bicubic; masks nearest). Falls back to the central
    crop after 10 tries, as torchvision does."""
    h, w = img.shape[:2]
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        cw, ch = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
            break
    else:
        ch, cw = min(h, w), min(h, w)
        top, left = (h - ch) // 2, (w - cw) // 2

    def crop(arr: np.ndarray, nearest: bool) -> np.ndarray:
        return resize_to(np.ascontiguousarray(arr[top:top + ch, left:left + cw]), (size, size),
                         nearest=nearest, bicubic=not nearest)

    return crop(img, False), tuple(crop(m, True) for m in masks)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for one sample's augmentation in one epoch."""
    return np.random.default_rng([seed, epoch, index])


def keyed_sample(source, seed: int, key: tuple[int, int]) -> tuple[str, np.random.Generator,
                                                                    np.ndarray]:
    """(image id, its augmentation generator, its decoded image) for an ``(epoch, index)`` key:
    the start of every stage dataset whose samples are a pure function of the key."""
    epoch, i = key
    image_id = source.ids[i]
    return image_id, sample_rng(seed, epoch, i), source.load_image(image_id)


__all__ = ["IGNORE_INDEX", "normalize", "denormalize", "rescale", "resize_to", "random_resize_long",
           "random_scale", "random_hflip", "random_crop", "random_resized_crop", "sample_rng",
           "keyed_sample"]
