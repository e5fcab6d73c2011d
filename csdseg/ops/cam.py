"""Multi-scale class activation maps, as IRN computes them (step/make_cam.py).

For each scale the network's ReLU'd maps of the image and of its mirror (flipped back) are
summed, resized to stride 4 (``cam``) and to full resolution (``high_res``), summed over scales,
restricted to the image's classes and normalised per class: by the maximum (+1e-5, IRN) or
min-max (+1e-8, MCTformer's ``generate_attention_maps_ms``).

How a model's grid maps onto pixels is the model's ``upsample`` attribute (see the contract in
:mod:`csdseg.models`):

- ``"strided"`` (IRN's CNN): a stride-s network gives ceil(H/s) cells whose last one overhangs
  the image, so the grid is resized to ceil(H/s)*s x ceil(W/s)*s and cropped to H x W;
- ``"resize"`` (a ViT, as the official MCTformer): the patch grid has floor(H/p) cells (the
  remainder pixels are dropped by the patch embedding) and is resized straight to H x W.

Either way ``cam`` is the grid resized straight to ceil(H/4) x ceil(W/4), as IRN does.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

UPSAMPLE_MODES = ("strided", "resize")


def strided_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    return ((size[0] - 1) // stride + 1, (size[1] - 1) // stride + 1)


def strided_up_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    h, w = strided_size(size, stride)
    return h * stride, w * stride


def upsample_maps(maps: torch.Tensor, size: tuple[int, int], mode: str = "strided",
                  stride: int = 16) -> torch.Tensor:
    """[B, k, h, w] grid -> [B, k, H, W] bilinear maps under the ``mode`` convention above
    (``stride``: the network's stride at scale 1, for ``"strided"``)."""
    if mode == "strided":
        up = F.interpolate(maps, strided_up_size(size, stride), mode="bilinear",
                           align_corners=False)
        return up[..., :size[0], :size[1]]
    if mode == "resize":
        return F.interpolate(maps, size, mode="bilinear", align_corners=False)
    raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got '{mode}'")


@torch.inference_mode()
def multiscale_cam(cam_fn: Callable[[torch.Tensor], torch.Tensor], views: list[torch.Tensor],
                   size: tuple[int, int], keys: torch.Tensor, device: torch.device,
                   normalize: str = "max", upsample: str = "strided", stride: int = 16
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps of one image.

    Args:
        cam_fn: [V, 3, h, w] -> [V, K, h', w'] non-negative maps (V = 2: image and mirror).
        views: one [V, 3, h_s, w_s] tensor per scale.
        size: (H, W) of the original image.
        keys: [k] indices of the image's classes.
        upsample, stride: the model's ``upsample`` convention and ``feature_stride``.
    Returns:
        ``cam`` [k, ceil(H/4), ceil(W/4)] and ``high_res`` [k, H, W], float32 on the CPU.
    """
    if upsample not in UPSAMPLE_MODES:
        raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got '{upsample}'")
    low_size = strided_size(size, 4)
    low = high = None
    for view in views:
        maps = cam_fn(view.to(device)).float()
        if maps.shape[0] == 2:  # the mirrored view, flipped back
            maps = maps[0] + maps[1].flip(-1)
        else:
            maps = maps[0]
        maps = maps[keys.to(maps.device)][None]
        lo = F.interpolate(maps, low_size, mode="bilinear", align_corners=False)[0]
        hi = upsample_maps(maps, size, upsample, stride)[0]
        low, high = (lo, hi) if low is None else (low + lo, high + hi)
    return normalize_maps(low, normalize).cpu(), normalize_maps(high, normalize).cpu()


def normalize_maps(maps: torch.Tensor, mode: str = "max") -> torch.Tensor:
    """Per-class normalisation of [k, h, w]: by the maximum (IRN, +1e-5) or min-max
    (MCTformer, +1e-8), each with its official epsilon."""
    if mode == "max":
        return maps / (maps.amax(dim=(1, 2), keepdim=True) + 1e-5)
    if mode == "minmax":
        low = maps.amin(dim=(1, 2), keepdim=True)
        return (maps - low) / (maps.amax(dim=(1, 2), keepdim=True) - low + 1e-8)
    raise ValueError(f"cam.normalize must be max or minmax, got '{mode}'")
