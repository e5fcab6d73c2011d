"""Fully connected (dense) CRF post-processing over pydensecrf2.

Two entry points, one per kind of unary:

- :func:`crf_inference_label` turns a hard label map into a sharper one. Its settings are
  IRN's (``misc/imutils.py``): a 0.7-confident unary from the labels, a Gaussian kernel
  (sxy 3, compat 3) and a bilateral kernel (sxy 50, srgb 5, compat 10). IRN's confident
  labels (:mod:`csdseg.ops.confident_labels`) run it twice per image.
- :func:`crf_inference_softmax` refines per-class probabilities (CAM+CRF pseudo-masks,
  segmentation post-processing). The defaults are DeepLab-v2's ResNet-101 VOC settings
  (pos_w 3, pos_xy_std 1, bi_w 4, bi_xy_std 67, bi_rgb_std 3, 10 iterations), as in the
  DeepLab-v2 release and kazuto1011/deeplab-pytorch ``configs/voc12.yaml``, the DeepLab code
  most WSSS papers train their final segmentation network with. Other published settings are
  in :data:`SOFTMAX_PRESETS`: DeepLab-LargeFOV (bi_xy_std 121, bi_rgb_std 5, pos_xy_std 3),
  PSA's CAM CRF (sxy 3/80, srgb 13, compat 3/10) and MCTformer's segmentation CRF
  (``seg/tool/imutils.py``: sxy 4/83, srgb 5, compat 3/3).

The CRF itself is single-threaded C++, so throughput comes from running images in parallel
(:func:`csdseg.ops.parallel.map_ids`), not from threads inside one call.
"""
from __future__ import annotations

from typing import Any

import numpy as np

# name -> keyword arguments of crf_inference_softmax.
SOFTMAX_PRESETS: dict[str, dict[str, float]] = {
    "deeplab_v2": dict(pos_w=3, pos_xy_std=1, bi_w=4, bi_xy_std=67, bi_rgb_std=3),
    "deeplab_largefov": dict(pos_w=3, pos_xy_std=3, bi_w=4, bi_xy_std=121, bi_rgb_std=5),
    "psa": dict(pos_w=3, pos_xy_std=3, bi_w=10, bi_xy_std=80, bi_rgb_std=13),
    "mctformer": dict(pos_w=3, pos_xy_std=4, bi_w=3, bi_xy_std=83, bi_rgb_std=5),
}


def _densecrf() -> Any:
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        raise ImportError(
            "the dense CRF needs pydensecrf; install it with `pip install pydensecrf2` "
            "(a maintained build of pydensecrf with wheels for recent Pythons)"
        ) from None
    return dcrf


def _check_image(img: np.ndarray, h: int, w: int) -> np.ndarray:
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"img must be [H, W, 3] RGB, got shape {img.shape}")
    if img.shape[:2] != (h, w):
        raise ValueError(f"img is {img.shape[:2]} but the labels/scores are {(h, w)}")
    if img.dtype != np.uint8:
        raise ValueError(f"img must be uint8, got {img.dtype}")
    # pydensecrf reads the buffer directly and needs C order; a private copy also keeps a
    # caller's view (e.g. a flipped array) from being read with the wrong strides.
    return np.ascontiguousarray(np.copy(img))


def crf_inference_label(img: np.ndarray, labels: np.ndarray, n_labels: int, t: int = 10,
                        gt_prob: float = 0.7) -> np.ndarray:
    """Refine a hard label map with IRN's dense CRF.

    img: uint8 [H, W, 3] RGB; labels: int [H, W] with values in 0..n_labels-1.
    Returns int64 [H, W], the per-pixel argmax after ``t`` mean-field iterations
    (``t=0`` returns ``labels`` unchanged).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be [H, W], got shape {labels.shape}")
    h, w = labels.shape
    rgb = _check_image(img, h, w)
    if n_labels < 1:
        raise ValueError(f"n_labels must be >= 1, got {n_labels}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_labels):
        raise ValueError(f"labels must lie in 0..{n_labels - 1}, got {labels.min()}..{labels.max()}")
    if n_labels == 1:  # one label: nothing to decide (and the unary would divide by zero)
        return np.zeros((h, w), np.int64)
    dcrf = _densecrf()
    from pydensecrf.utils import unary_from_labels

    crf = dcrf.DenseCRF2D(w, h, n_labels)
    crf.setUnaryEnergy(unary_from_labels(labels.astype(np.int64), n_labels, gt_prob=gt_prob,
                                         zero_unsure=False))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=50, srgb=5, rgbim=rgb, compat=10)
    q = np.asarray(crf.inference(t))
    return np.argmax(q.reshape(n_labels, h, w), axis=0)


def crf_inference_softmax(img: np.ndarray, probs: np.ndarray, t: int = 10, pos_w: float = 3,
                          pos_xy_std: float = 1, bi_w: float = 4, bi_xy_std: float = 67,
                          bi_rgb_std: float = 3) -> np.ndarray:
    """Refine class probabilities with a dense CRF (DeepLab-v2 defaults).

    img: uint8 [H, W, 3] RGB; probs: float [C, H, W], non-negative, summing to 1 over C
    (probabilities are clipped at 1e-5 before the log). Returns float32 [C, H, W], the
    CRF's marginals; take ``argmax(0)`` for labels.
    """
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 3:
        raise ValueError(f"probs must be [C, H, W], got shape {probs.shape}")
    c, h, w = probs.shape
    rgb = _check_image(img, h, w)
    if c == 1:
        return np.ones_like(probs)
    dcrf = _densecrf()
    from pydensecrf.utils import unary_from_softmax

    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    crf.addPairwiseGaussian(sxy=pos_xy_std, compat=pos_w)
    crf.addPairwiseBilateral(sxy=bi_xy_std, srgb=bi_rgb_std, rgbim=rgb, compat=bi_w)
    q = np.asarray(crf.inference(t), dtype=np.float32)
    return q.reshape(c, h, w)
