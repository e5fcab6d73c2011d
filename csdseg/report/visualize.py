"""Pictures of label maps: VOC-palette PNGs, blended overlays and a legend of class names.

Every picture-making stage uses these: ``palette_png`` for label files that both tools and
people can read, ``side_by_side`` for a quick look (image | coloured mask over the image |
legend of the classes present).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from csdseg.data.classes import IGNORE_INDEX, voc_palette

PALETTE = voc_palette()  # [256, 3] uint8; index 255 (void) is the cream (224, 224, 192)


def palette_png(labels: np.ndarray) -> Image.Image:
    """Label map [H, W] (0..254, 255 void) -> palette ('P' mode) image with the VOC colours."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be [H, W], got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError("labels must lie in 0..255")
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(PALETTE.reshape(-1).tolist())
    return image


def colorize(labels: np.ndarray) -> np.ndarray:
    """Label map [H, W] -> RGB uint8 [H, W, 3] in the VOC colours."""
    return PALETTE[np.asarray(labels).astype(np.uint8)]


def overlay(img: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the coloured labels over the image; background (0) and void stay the image."""
    if img.shape[:2] != labels.shape:
        raise ValueError(f"image {img.shape[:2]} and labels {labels.shape} differ in size")
    colour = colorize(labels).astype(np.float32)
    out = img.astype(np.float32)
    fg = ((labels != 0) & (labels != IGNORE_INDEX))[..., None]
    out = np.where(fg, (1 - alpha) * out + alpha * colour, out)
    return out.round().astype(np.uint8)


def legend(class_ids: list[int], names: list[str], height: int, row: int = 16) -> np.ndarray:
    """A white panel RGB [max(height, rows), W, 3]: a colour swatch and a name per class id.

    ``names[i]`` names label i (``names[0]`` is background).
    """
    font = ImageFont.load_default()
    texts = [names[i] if i < len(names) else f"class {i}" for i in class_ids]
    text_w = max([int(font.getlength(t)) for t in texts] + [40])
    width = row + 8 + text_w + 8
    panel = Image.new("RGB", (width, max(height, row * len(texts) + 4)), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    for n, (cid, text) in enumerate(zip(class_ids, texts)):
        top = 2 + n * row
        draw.rectangle([4, top, 4 + row - 4, top + row - 4], fill=tuple(int(v) for v in PALETTE[cid]),
                       outline=(0, 0, 0))
        draw.text((row + 8, top), text, fill=(0, 0, 0), font=font)
    return np.asarray(panel)


def side_by_side(img: np.ndarray, labels: np.ndarray, names: list[str], alpha: float = 0.5,
                 min_height: int = 128) -> np.ndarray:
    """RGB uint8 picture: image | labels blended over it | legend of the labels present.

    ``names`` includes background at index 0. Images shorter than ``min_height`` are enlarged
    by an integer factor (nearest neighbour) so that tiny inputs stay visible.
    """
    factor = max(1, -(-min_height // max(1, img.shape[0])))
    if factor > 1:
        img = np.repeat(np.repeat(img, factor, 0), factor, 1)
        labels = np.repeat(np.repeat(labels, factor, 0), factor, 1)
    present = [int(c) for c in np.unique(labels) if c != IGNORE_INDEX]
    key = legend(present, names, img.shape[0])
    h = max(img.shape[0], key.shape[0])

    def pad(panel: np.ndarray) -> np.ndarray:
        out = np.full((h, panel.shape[1], 3), 255, np.uint8)
        out[:panel.shape[0]] = panel
        return out

    gap = np.full((h, 4, 3), 255, np.uint8)
    return np.concatenate([pad(img), gap, pad(overlay(img, labels, alpha)), gap, pad(key)], 1)
