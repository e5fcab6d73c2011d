"""PSA's random walk: CAMs spread over AffinityNet's affinities into a pseudo-mask.

Facts from jiwoon-ahn/psa (9493e59) ``infer_aff.py`` and MCTformer's copy
(xulianuwa/MCTformer ``psa/infer_aff.py``), which differ in two defaults:

| | PSA | MCTformer |
|---|---|---|
| background channel | (1 - max_c CAM)^alpha, alpha 16 | a constant 0.39 (``--bg_thr``) |
| steps | 2^logt, logt 8 | logt 6 |
| beta | 8 | 8 |

The full-resolution CAMs (one channel per present class) with the background channel in front
are zero-padded at the bottom/right to multiples of 8 (as the image the network sees), then
averaged over 8 x 8 cells. The transition matrix is T = A D^-1: A the dense affinity matrix
(each PSA pair in both directions, ones on the diagonal) raised to beta, columns normalised;
the official code squares T logt times and takes x^T T^(2^logt). As IRN's walk
(csdseg.ops.random_walk) we apply the same power as 2^logt sparse products of the
row-normalised matrix with the vectors (A is symmetric). The walked maps are resized
bilinearly (align_corners False) to the padded size, arg-maxed over channels (ties to the
lower channel, the background first) and cropped to the image.

Only PSA's pairs are edges: the last 4 rows and the first/last 4 columns are never sources,
so two pixels both within those margins are linked only through others, as in the official
matrix.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from csdseg.ops.psa_affinity import PSA_RADIUS, PSA_STRIDE, pad_to_stride, psa_pairs
from csdseg.ops.random_walk import cpu_walk_mode, propagate, transition_matrix

PSA_WALK = {"alpha": 16.0, "beta": 8.0, "logt": 8}  # jiwoon-ahn/psa infer_aff.py
MCT_WALK = {"bg_threshold": 0.39, "beta": 8.0, "logt": 6}  # MCTformer's psa/infer_aff.py


def walk_scores(cams: torch.Tensor, alpha: float | None = 16.0,
                bg_threshold: float | None = None) -> torch.Tensor:
    """[K', H, W] CAMs in [0, 1] -> [1 + K', H, W] with the background channel in front:
    (1 - max)^alpha (PSA), or the constant ``bg_threshold`` (MCTformer); exactly one given."""
    if (alpha is None) == (bg_threshold is None):
        raise ValueError("give exactly one of alpha (PSA) and bg_threshold (MCTformer)")
    cams = cams.float()
    if bg_threshold is not None:
        bg = torch.full(cams.shape[1:], float(bg_threshold))
    else:
        top = cams.amax(dim=0) if cams.shape[0] else torch.zeros(cams.shape[1:])
        bg = (1 - top) ** alpha
    return torch.cat([bg[None].to(cams), cams], dim=0)


def psa_random_walk(x: torch.Tensor, aff: torch.Tensor, beta: float = 8.0, logt: int = 8,
                    radius: int = PSA_RADIUS, threads: int = 1) -> torch.Tensor:
    """x [C, h, w] (pooled scores), aff [D, Ns] (AffinityNet's output for this grid) ->
    x walked 2^logt steps [C, h, w]."""
    c, h, w = x.shape
    src, dst = (torch.from_numpy(a).to(x.device) for a in psa_pairs(h, w, radius))
    if aff.shape != dst.shape:
        raise ValueError(f"affinities are {tuple(aff.shape)}, but a {h}x{w} grid has "
                         f"{tuple(dst.shape)} pairs at radius {radius}")
    with cpu_walk_mode(x.device, threads):
        trans = transition_matrix(src.expand_as(dst).reshape(-1), dst.reshape(-1),
                                  aff.float().reshape(-1) ** beta, h * w)
        flat = x.float().reshape(c, h * w).T.contiguous()
        return propagate(trans, flat, 2 ** logt, threads).T.reshape(c, h, w)


def walk_to_labels(walked: torch.Tensor, keys: np.ndarray, size: tuple[int, int],
                   stride: int = PSA_STRIDE) -> np.ndarray:
    """walked [1 + K', h, w] (channel 0 background) -> uint8 [H, W]: bilinear to the padded
    size (h * stride, w * stride), argmax, cropped; channel c > 0 -> label keys[c - 1] + 1."""
    h, w = walked.shape[1:]
    up = F.interpolate(walked[None].float(), (h * stride, w * stride), mode="bilinear",
                       align_corners=False)[0]
    pred = up.argmax(dim=0)[:size[0], :size[1]].cpu().numpy()
    lut = np.concatenate([[0], np.asarray(keys, dtype=np.int64).reshape(-1) + 1])
    return lut[pred].astype(np.uint8)


def psa_walk(cams: torch.Tensor, keys: np.ndarray, aff: torch.Tensor,
             alpha: float | None = 16.0, bg_threshold: float | None = None,
             beta: float = 8.0, logt: int = 8, threads: int = 1,
             padded: tuple[int, int] | None = None) -> tuple[np.ndarray, torch.Tensor]:
    """infer_aff for one image. cams: [K', H, W] (make-cam's ``high_res``), keys: int [K']
    class indices (0-based), aff: [D, Ns] AffinityNet's affinities of the image zero-padded to
    multiples of 8, or to ``padded`` (multiples of 8, at least the image: where an image is
    too small for PSA's pairs). Returns (pseudo-mask uint8 [H, W], walked maps [1 + K', h, w])."""
    size = tuple(cams.shape[1:])
    scores = walk_scores(cams, alpha, bg_threshold)
    if padded is None:
        scores = pad_to_stride(scores)
    else:  # zeros in every channel, as PSA pads its score maps after the background channel
        scores = F.pad(scores, (0, padded[1] - size[1], 0, padded[0] - size[0]))
    pooled = F.avg_pool2d(scores[None], PSA_STRIDE, PSA_STRIDE)[0]
    walked = psa_random_walk(pooled, aff.to(pooled.device), beta, logt, threads=threads)
    return walk_to_labels(walked, keys, size), walked
