"""Boundary maps -> inter-pixel affinities, and confident labels -> affinity targets (IRN).

IRN's affinity between two pixels within the path radius is ``1 - max boundary`` over the
cells of the straight path joining them (both ends included): a pair is unrelated as soon as a
boundary cuts the line between them. The random walk raises it to the power ``beta``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from csdseg.data.classes import IGNORE_INDEX
from csdseg.ops.path_index import PathIndex


def boundary_to_affinity(boundary: torch.Tensor, index: PathIndex,
                         paths: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Affinities in IRN's cropped layout.

    boundary: [B, H, W] in [0, 1]. Returns [B, D, Ns] (D directions in ``index`` order,
    Ns = (H - r + 1) * (W - 2r + 2) sources). ``paths`` caches ``index.cropped_paths(H, W)``
    as tensors on the boundary's device (training reuses them every step).
    """
    b, h, w = boundary.shape
    if paths is None:
        paths = [torch.from_numpy(p).to(boundary.device) for p in index.cropped_paths(h, w)]
    flat = boundary.reshape(b, h * w)
    out = []
    for cells in paths:  # one gather per path length, not one per direction
        p, length, ns = cells.shape
        values = flat.index_select(1, cells.reshape(-1)).view(b, p, length, ns)
        out.append(1.0 - values.amax(dim=2))
    return torch.cat(out, dim=1)


def walk_affinity(boundary: torch.Tensor, index: PathIndex, beta: float = 10.0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Affinity ** beta for every pair inside the grid (the random walk's edges).

    boundary: [h, w]. Returns (src [M], dst [M]) int64 flat indices and aff [M], on the
    boundary's device. The grid is padded on the left, right and bottom so that every pixel is
    a source in IRN's cropped layout; pairs reaching into the padding are dropped (a path
    between two inside pixels never leaves their bounding box, so the pad value is unused).
    """
    h, w = boundary.shape
    f = index.floor
    padded = F.pad(boundary[None, None], (f, f, 0, f), value=1.0)[0]
    full = boundary_to_affinity(padded, index)[0]  # [D, h * w]: sources are the inside pixels
    src, dst, direction = (torch.from_numpy(a).to(boundary.device) for a in index.all_pairs(h, w))
    aff = full[direction, src].clamp_min(0.0) ** beta
    return src, dst, aff


def affinity_labels(label: np.ndarray, src: np.ndarray, dst: np.ndarray,
                    ignore_index: int = IGNORE_INDEX) -> tuple[np.ndarray, ...]:
    """IRN's affinity targets from a confident label map (0 = background, 1..K, 255 unsure).

    label: int [h, w]; src [Ns] / dst [D, Ns] flat indices (``PathIndex.cropped_pairs``).
    Returns float32 [D, Ns] masks (bg_pos, fg_pos, neg): both ends confident and equal with
    background / with a class at the source, or both confident and different.
    """
    flat = np.asarray(label).reshape(-1)
    a, b = flat[src][None], flat[dst]
    valid = (a != ignore_index) & (b != ignore_index)
    equal = a == b
    bg_pos = valid & equal & (a == 0)
    fg_pos = valid & equal & (a > 0)
    neg = valid & ~equal
    return bg_pos.astype(np.float32), fg_pos.astype(np.float32), neg.astype(np.float32)
