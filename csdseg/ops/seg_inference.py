"""Segmentation inference shared by train-seg's validation, eval-seg, predict and the bench:
full-resolution class probabilities of any network of the segmentation contract
(csdseg/models/deeplab.py), averaged over scales and flips.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from csdseg.data.transforms import normalize


@torch.no_grad()
def predict_probs(model: nn.Module, img: np.ndarray, device: torch.device,
                  scales: tuple[float, ...] | list[float] = (1.0,), flip: bool = False) -> np.ndarray:
    """Softmax averaged over scales (and horizontal flips) at full resolution.

    img: uint8 [H, W, 3] RGB. Returns float32 [K + 1, H, W]. Each view is rescaled (bilinear,
    on the normalised tensor), padded on the bottom/right to ``model.min_input_size``, and its
    logits are upsampled back to H x W before the softmax.
    """
    h, w = img.shape[:2]
    x = torch.from_numpy(normalize(img))[None].to(device)
    min_size = int(getattr(model, "min_input_size", 1))
    total = None
    views = 0
    for scale in scales:
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        xs = x if (sh, sw) == (h, w) else F.interpolate(x, size=(sh, sw), mode="bilinear",
                                                         align_corners=False)
        batch = torch.cat([xs, xs.flip(-1)]) if flip else xs
        ph, pw = max(min_size, sh), max(min_size, sw)
        if (ph, pw) != (sh, sw):  # zero = the mean colour after normalisation
            batch = F.pad(batch, (0, pw - sw, 0, ph - sh))
        logits = model(batch)
        # map the padded canvas back, crop the padding, then resize to the image size
        logits = F.interpolate(logits, size=(ph, pw), mode="bilinear", align_corners=False)
        logits = logits[..., :sh, :sw]
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        probs = logits.float().softmax(1)
        if flip:
            probs = torch.cat([probs[:1], probs[1:].flip(-1)])
        probs = probs.sum(0)
        total = probs if total is None else total + probs
        views += 2 if flip else 1
    return (total / views).cpu().numpy().astype(np.float32)
