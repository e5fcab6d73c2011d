"""CSD's consistency terms: per-cell class distributions and a masked KL divergence.

For each feature cell u: p_u = softmax([A_1(u), ..., A_K(u), beta] / T), A the normalised
class activation maps (ReLU'd raw maps over a normaliser, see :func:`normalize_maps`). The term
is the mean over selected cells of KL(p_u(teacher) || p_u(student)). Options of the other
readings (csdseg/csd/variants.py): no background channel, a scale per side, the KL's terms of
some channels only, cells zeroed by the teacher's confidence, a per-image mean.

Everything is computed in float32 (the loop may run the forward under autocast).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-5
MINMAX_EPS = 1e-4  # the authors' (func.py cal_cam), in both of its min-max normalisations


# Each normaliser: maps [N, K, h, w] raw -> A [N, K, h, w] (floor: detached_floor's only).
def _max(m: torch.Tensor, floor: float) -> torch.Tensor:
    """relu / (per-class max + 1e-5), differentiable: the paper's reading; the gradient is
    scaled by ~1/max, which explodes for weak classes."""
    a = F.relu(m)
    return a / (a.amax(dim=(2, 3), keepdim=True) + EPS)


def _detached_floor(m: torch.Tensor, floor: float) -> torch.Tensor:
    """relu / max(detached per-class max, floor)."""
    a = F.relu(m)
    return a / a.detach().amax(dim=(2, 3), keepdim=True).clamp_min(floor)


def _global(m: torch.Tensor, floor: float) -> torch.Tensor:
    """relu / (detached max over all classes and cells + 1e-5): weak or absent classes stay
    small instead of being stretched to 1 (our default)."""
    a = F.relu(m)
    return a / (a.detach().amax(dim=(1, 2, 3), keepdim=True) + EPS)


def _class_minmax(m: torch.Tensor, floor: float) -> torch.Tensor:
    """Per cell, (m - min over classes) / (max - min over classes + 1e-4), no ReLU,
    differentiable: the authors' fg term; invariant to a positive scale and a per-cell shift."""
    lo, hi = m.amin(dim=1, keepdim=True), m.amax(dim=1, keepdim=True)
    return (m - lo) / (hi - lo + MINMAX_EPS)


def _none(m: torch.Tensor, floor: float) -> torch.Tensor:
    """The raw maps, no ReLU (the authors' bg term)."""
    return m


# csd.normalizer -> function; a new normaliser is one function and one line here (and its name
# in csdseg/config/sections.py's Normalizer, which a test keeps equal to these keys)
NORMALIZERS = {"max": _max, "detached_floor": _detached_floor, "global": _global,
               "class_minmax": _class_minmax, "none": _none}


def normalize_maps(maps: torch.Tensor, mode: str = "global", floor: float = 1.0) -> torch.Tensor:
    """maps [N, K, h, w] raw -> A [N, K, h, w], in float32, by the normaliser ``mode``."""
    if mode not in NORMALIZERS:
        raise ValueError(f"normalizer must be one of {', '.join(NORMALIZERS)}, got '{mode}'")
    return NORMALIZERS[mode](maps.float(), floor)


def cell_log_probs(a: torch.Tensor, beta: float, temperature: float,
                   channels: torch.Tensor | None = None, background: bool = True,
                   scale: float = 1.0) -> torch.Tensor:
    """A [N, K, h, w] -> log p [N, K + 1, h, w] (last channel: background score beta).

    ``channels`` bool [N, K + 1] keeps only those channels in the softmax (the others get
    log p = -inf); None keeps all. ``background=False``: no background channel, log p
    [N, K, h, w] (``channels``' last column is ignored). Logits = [A, beta] / T x ``scale``.
    """
    if background:
        logits = torch.cat([a, torch.full_like(a[:, :1], beta)], 1) / temperature
    else:
        logits = a / temperature
        channels = None if channels is None else channels[:, :a.shape[1]]
    if scale != 1.0:
        logits = logits * scale
    if channels is not None:
        logits = logits.masked_fill(~channels[:, :, None, None], float("-inf"))
    return torch.log_softmax(logits, dim=1)


def cell_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pixel mask [N, H, W] (bool/0-1) -> bool [N, h, w]: cells fully covered by the mask.

    A min-pool over each cell, via adaptive pooling to the maps' size, so any feature stride
    and input sizes that do not divide evenly are handled alike.
    """
    outside = 1.0 - mask.float()[:, None]
    return F.adaptive_max_pool2d(outside, size)[:, 0] == 0


def masked_kl(teacher_logp: torch.Tensor, student_logp: torch.Tensor, cells: torch.Tensor,
              terms: torch.Tensor | None = None, keep: torch.Tensor | None = None,
              reduction: str = "cells") -> torch.Tensor:
    """Mean over cells [N, h, w] of KL(p_teacher || p_student); 0 (in the graph) when no cell.

    Log-probabilities [N, C, h, w]; channels that are -inf in both contribute nothing.
    ``terms`` bool [N, C]: sum the KL's terms p_t (log p_t - log p_s) of these channels only
    (each term may be negative). ``keep`` bool [N, h, w]: zero the other cells, which still
    count in the mean. ``reduction``: cells (the mean over all cells of the batch) or images
    (each image's sum over its cells / its number of cells, then the sum over images / N; an
    image without a cell gives 0).
    """
    if reduction not in ("cells", "images"):
        raise ValueError(f"reduction must be cells or images, got '{reduction}'")
    p_t = teacher_logp.exp()
    diff = torch.where(p_t > 0, teacher_logp - student_logp, torch.zeros_like(p_t))
    point = p_t * diff
    if terms is not None:
        point = point * terms[:, :, None, None]
    kl = point.sum(1)  # [N, h, w]
    n = cells.sum()
    if n == 0:
        # in the graph, as 0: left-out channels are -inf (kl_channels=pasted) and -inf * 0 is
        # nan, so they are zeroed first; + 0.0: never log "-0.0"
        return torch.nan_to_num(student_logp, neginf=0.0).sum() * 0.0 + 0.0
    kept = cells if keep is None else cells & keep
    if reduction == "images":
        per = (kl * kept).sum((1, 2)) / cells.sum((1, 2)).clamp_min(1)
        return per.sum() / len(per)
    return (kl * kept).sum() / n


def teacher_confidence(maps: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """Raw teacher maps [N, K, h, w], pasted class [N] -> [N, h, w]: the map of class c,
    min-max normalised over its cells, (m - min) / (max - min + 1e-4) (func.py cal_cam)."""
    m = maps.float()[torch.arange(len(cls), device=maps.device), cls]
    lo, hi = m.amin(dim=(1, 2), keepdim=True), m.amax(dim=(1, 2), keepdim=True)
    return (m - lo) / (hi - lo + MINMAX_EPS)


def channel_mask(n: int, num_classes: int, classes: torch.Tensor | None,
                 device: torch.device) -> torch.Tensor:
    """bool [N, K + 1]: True on ``classes`` (bool [N, K]; None = all) and on background."""
    keep = torch.ones(n, num_classes + 1, dtype=torch.bool, device=device)
    if classes is not None:
        keep[:, :num_classes] = classes.bool()
    return keep


def dead_share(maps: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(present classes whose ReLU'd map is all zero, present classes) over a batch.

    maps [B, K, h, w] raw, labels [B, K] multi-hot.
    """
    alive = (maps.detach() > 0).flatten(2).any(-1)  # [B, K]
    present = labels > 0
    return int((present & ~alive).sum()), int(present.sum())
