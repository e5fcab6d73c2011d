"""Multi-scale class activation maps, as IRN computes them (step/make_cam.py).

For each scale the network's ReLU'd maps of the image and of its mirror (flipped back) are
summed, resized to stride 4 (``cam``) and to full resolution (``high_res``), summed over scales,
restricted to the image's classes and normalised per class by the maximum (+1e-5).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def strided_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    return ((size[0] - 1) // stride + 1, (size[1] - 1) // stride + 1)


def strided_up_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    h, w = strided_size(size, stride)
    return h * stride, w * stride


@torch.inference_mode()
def multiscale_cam(cam_fn: Callable[[torch.Tensor], torch.Tensor], views: list[torch.Tensor],
                   size: tuple[int, int], keys: torch.Tensor, device: torch.device,
                   normalize: str = "max") -> tuple[torch.Tensor, torch.Tensor]:
    """Maps of one image.

    Args:
        cam_fn: [V, 3, h, w] -> [V, K, h', w'] non-negative maps (V = 2: image and mirror).
        views: one [V, 3, h_s, w_s] tensor per scale.
        size: (H, W) of the original image.
        keys: [k] indices of the image's classes.
    Returns:
        ``cam`` [k, ceil(H/4), ceil(W/4)] and ``high_res`` [k, H, W], float32 on the CPU.
    """
    low_size, up_size = strided_size(size, 4), strided_up_size(size, 16)
    low = high = None
    for view in views:
        maps = cam_fn(view.to(device)).float()
        if maps.shape[0] == 2:  # the mirrored view, flipped back
            maps = maps[0] + maps[1].flip(-1)
        else:
            maps = maps[0]
        maps = maps[keys.to(maps.device)][None]
        lo = F.interpolate(maps, low_size, mode="bilinear", align_corners=False)[0]
        hi = F.interpolate(maps, up_size, mode="bilinear", align_corners=False)[0, :, :size[0], :size[1]]
        low, high = (lo, hi) if low is None else (low + lo, high + hi)
    return normalize_maps(low, normalize).cpu(), normalize_maps(high, normalize).cpu()


def normalize_maps(maps: torch.Tensor, mode: str = "max") -> torch.Tensor:
    """Per-class normalisation of [k, h, w]: by the maximum (IRN) or min-max (MCTformer)."""
    if mode == "max":
        return maps / (maps.amax(dim=(1, 2), keepdim=True) + 1e-5)
    if mode == "minmax":
        low = maps.amin(dim=(1, 2), keepdim=True)
        return (maps - low) / (maps.amax(dim=(1, 2), keepdim=True) - low + 1e-5)
    raise ValueError(f"cam.normalize must be max or minmax, got '{mode}'")
