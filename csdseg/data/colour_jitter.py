"""torchvision's ColorJitter with an explicit RNG, so a sample stays a function of its key.

PSA's train_aff jitters every training image (brightness, contrast, saturation 0.3, hue 0.1)
before cropping. torchvision's transform draws from torch's global generator, which would make
a sample depend on what ran before it (and break exact resume); here the same four operations
(torchvision's own functional ones, on a PIL image) take their factors and their random order
from the sample's ``numpy.random.Generator``: factors uniform in [1 - x, 1 + x] (hue in
[-h, h]), the four applied in a random permutation, as ColorJitter does.
"""
from __future__ import annotations

import numpy as np
from PIL import Image


def colour_jitter(img: np.ndarray, rng: np.random.Generator, brightness: float = 0.3,
                  contrast: float = 0.3, saturation: float = 0.3, hue: float = 0.1
                  ) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [H, W, 3]; a strength of 0 leaves that operation out (and
    draws nothing for it, so the other draws stay put)."""
    import torchvision.transforms.functional as TF

    if not 0 <= hue <= 0.5:
        raise ValueError(f"hue jitter must lie in [0, 0.5], got {hue}")
    ops = []
    for strength, fn in ((brightness, TF.adjust_brightness), (contrast, TF.adjust_contrast),
                         (saturation, TF.adjust_saturation)):
        if strength < 0:
            raise ValueError(f"jitter strengths must be >= 0, got {strength}")
        ops.append((fn, float(rng.uniform(max(0.0, 1 - strength), 1 + strength)))
                   if strength else None)
    ops.append((TF.adjust_hue, float(rng.uniform(-hue, hue))) if hue else None)
    out = Image.fromarray(img)
    for i in rng.permutation(4):
        if ops[i] is not None:
            fn, factor = ops[i]
            out = fn(out, factor)
    return np.asarray(out, dtype=np.uint8).copy()
