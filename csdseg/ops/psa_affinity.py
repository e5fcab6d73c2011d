"""PSA's affinities, affinity labels and affinity loss (Ahn & Kwak, CVPR 2018).

Facts from jiwoon-ahn/psa (9493e59):

- **Pairs** (``tool/pyutils.py: get_indices_of_pairs``, radius 5 on the stride-8 grid): IRN's
  cropped layout (csdseg.ops.path_index) -- sources rows [0, h - 4) x columns [4, w - 4),
  destinations source + (dy, dx) with dy**2 + dx**2 < 25, dy > 0 or (dy == 0, dx > 0) -- but
  the D = 34 directions in their plain search order (row 0 first, then row by row), not
  IRN's order by path length.
- **Affinity** (``network/resnet38_aff.py``): exp(-mean over channels |f_src - f_dst|).
- **Confident labels** (``infer_cls.py`` + ``voc12/data.py: VOC12AffDataset``): the CAMs
  under a background score (1 - max_c CAM)^alpha, dense-CRF refined (``tool/imutils.py``:
  t = 10, Gaussian sxy 3 compat 3, bilateral sxy 80 srgb 13 compat 10; csdseg.ops.crf preset
  ``psa``), once with a low alpha (PSA 4, MCTformer 1: a large background score, so what
  stays foreground is confident) and once with a high alpha (PSA 32, MCTformer 12: what is
  background even then is confident). In training both score maps are cropped with the
  image (zeros outside it), averaged over 8 x 8 blocks, arg-maxed: a cell is its low-alpha
  class where that is foreground, background where the high-alpha map says background,
  ignored (255) otherwise and where no score reached 1e-5 (outside the image).
- **Affinity labels** (``ExtractAffinityLabelInRadius``): IRN's bg-bg / fg-fg / negative
  masks over the same pairs (csdseg.ops.affinity.affinity_labels).
- **Loss** (``train_aff.py``): bg = sum(-bg_pos log(a + 1e-5)) / (#bg_pos + 1e-5),
  fg likewise, neg = sum(-neg log(1 + 1e-5 - a)) / (#neg + 1e-5), counts over the whole
  batch; loss = bg / 4 + fg / 4 + neg / 2.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from csdseg.data.classes import IGNORE_INDEX
from csdseg.ops.affinity import affinity_labels
from csdseg.ops.crf import SOFTMAX_PRESETS, crf_inference_softmax
from csdseg.ops.path_index import PathIndex, search_directions

PSA_RADIUS = 5
PSA_STRIDE = 8
EPS = 1e-5  # PSA's log and count guard


def psa_pairs(h: int, w: int, radius: int = PSA_RADIUS) -> tuple[np.ndarray, np.ndarray]:
    """PSA's pairs on an h x w grid: src int64 [Ns], dst int64 [D, Ns] (flat indices),
    directions in search order. Raises ValueError if the grid is narrower than 2r - 1 or
    lower than r."""
    index = PathIndex(radius)
    src, dst = index.cropped_pairs(h, w)
    where = {tuple(o): i for i, o in enumerate(index.offsets.tolist())}
    order = [where[d] for d in search_directions(radius)]
    return src, dst[order]


def feature_affinity(f: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """f [B, C, h, w], src [Ns], dst [D, Ns] -> exp(-mean_c |f_dst - f_src|) [B, D, Ns]."""
    b, c = f.shape[:2]
    flat = f.reshape(b, c, -1)
    ff = flat.index_select(2, src).unsqueeze(2)  # [B, C, 1, Ns]
    ft = flat.index_select(2, dst.reshape(-1)).view(b, c, dst.shape[0], dst.shape[1])
    return torch.exp(-(ft - ff).abs().mean(dim=1))


def bg_score(cams: np.ndarray, alpha: float) -> np.ndarray:
    """PSA's background score (1 - max_c cams)^alpha: cams [K', H, W] -> [H, W] (1 where
    K' = 0)."""
    cams = np.asarray(cams, dtype=np.float32)
    top = cams.max(axis=0) if cams.shape[0] else np.zeros(cams.shape[1:], np.float32)
    return np.power(1 - top, alpha).astype(np.float32)


def crf_scores(img: np.ndarray, cams: np.ndarray, alpha: float) -> np.ndarray:
    """infer_cls's ``_crf_with_alpha``: img uint8 [H, W, 3], cams [K', H, W] in [0, 1] ->
    float32 [1 + K', H, W], the dense CRF's marginals of [bg_score; cams] (unnormalised
    scores, as official: the unary is -log of each)."""
    cams = np.asarray(cams, dtype=np.float32)
    scores = np.concatenate([bg_score(cams, alpha)[None], cams], axis=0)
    return crf_inference_softmax(img, scores, t=10, **SOFTMAX_PRESETS["psa"])


def block_mean(x: np.ndarray, k: int = PSA_STRIDE) -> np.ndarray:
    """Mean over k x k blocks of x [H, W, C] -> [ceil(H/k), ceil(W/k), C], zero-padded at the
    bottom/right as scikit-image's ``block_reduce`` (PSA's ``AvgPool2d``)."""
    h, w = x.shape[:2]
    ph, pw = -h % k, -w % k
    x = np.pad(x, ((0, ph), (0, pw), (0, 0)))
    hh, ww = x.shape[0] // k, x.shape[1] // k
    return x.reshape(hh, k, ww, k, -1).mean(axis=(1, 3))


def label_from_scores(la: np.ndarray, ha: np.ndarray) -> np.ndarray:
    """VOC12AffDataset's label map from the pooled low/high-alpha scores [h, w, 1 + K'] (the
    two with the same channels; channel 0 background): uint8 [h, w], 0 background, c >= 1
    the channel index of a class, 255 unsure or without any score (outside the image)."""
    if la.shape != ha.shape:
        raise ValueError(f"low- and high-alpha scores differ in shape: {la.shape}, {ha.shape}")
    no_score = np.maximum(la.max(axis=-1), ha.max(axis=-1)) < EPS
    fg, bg = la.argmax(axis=-1), ha.argmax(axis=-1)
    label = fg.astype(np.uint8)
    label[fg == 0] = IGNORE_INDEX
    label[bg == 0] = 0
    label[no_score] = IGNORE_INDEX
    return label


def pair_labels(la: np.ndarray, ha: np.ndarray, radius: int = PSA_RADIUS
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Affinity targets of one training crop: la, ha float [H, W, 1 + K'] (cropped CRF
    scores, zeros outside the image; H, W multiples of 8) -> (bg_pos, fg_pos, neg) float32
    [D, Ns] in PSA's pair layout on the H/8 x W/8 grid."""
    label = label_from_scores(block_mean(la), block_mean(ha))
    src, dst = psa_pairs(label.shape[0], label.shape[1], radius)
    return affinity_labels(label, src, dst)


def affinity_loss(aff: torch.Tensor, bg_pos: torch.Tensor, fg_pos: torch.Tensor,
                  neg: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PSA's loss. aff, bg_pos, fg_pos, neg: [B, D, Ns]. Returns (loss, parts) with parts
    ``bg``, ``fg``, ``neg`` (the three terms) and their pair counts ``*_count``."""
    counts = {k: m.sum() + EPS for k, m in (("bg", bg_pos), ("fg", fg_pos), ("neg", neg))}
    pos_log = torch.log(aff + EPS)
    parts = {"bg": (-bg_pos * pos_log).sum() / counts["bg"],
             "fg": (-fg_pos * pos_log).sum() / counts["fg"],
             "neg": (-neg * torch.log(1.0 + EPS - aff)).sum() / counts["neg"]}
    loss = parts["bg"] / 4 + parts["fg"] / 4 + parts["neg"] / 2
    parts.update({f"{k}_count": v.detach() for k, v in counts.items()})
    return loss, parts


def pad_to_stride(x: torch.Tensor, stride: int = PSA_STRIDE) -> torch.Tensor:
    """Zero-pad [..., H, W] at the bottom/right to multiples of ``stride`` (infer_aff)."""
    return F.pad(x, (0, -x.shape[-1] % stride, 0, -x.shape[-2] % stride))
