"""Fully connected (dense) CRF post-processing over pydensecrf2.

Two entry points, one per kind of unary:

- :func:`crf_inference_label` turns a hard label map into a sharper one. Its settings are
  IRN's (``misc/imutils.py``): a 0.7-confident unary from the labels, a Gaussian kernel
  (sxy 3, compat 3) and a bilateral kernel (sxy 50, srgb 5, compat 10). IRN's confident
  labels (:mod:`csdseg.ops.confident_labels`) run it twice per image, through
  :func:`crf_inference_labels`, which builds those kernels once for both maps.
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

from typing import Any, Sequence

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
    return crf_inference_labels(img, [labels], n_labels, t=t, gt_prob=gt_prob)[0]


def crf_inference_labels(img: np.ndarray, label_maps: Sequence[np.ndarray], n_labels: int,
                         t: int = 10, gt_prob: float = 0.7) -> list[np.ndarray]:
    """:func:`crf_inference_label` of several label maps of the same image, each answer the
    one a CRF of its own would give (bit for bit: tests/test_crf.py).

    The pairwise terms depend on the image alone, so they are built once and shared: building
    them (the bilateral kernel's permutohedral lattice and its normalisation) costs about a
    quarter of one CRF, and pydensecrf's ``inference`` reads only the unary and the (unchanged)
    pairwise terms, so swapping the unary between maps changes nothing else.
    """
    maps = [np.asarray(labels) for labels in label_maps]
    for labels in maps:
        if labels.ndim != 2:
            raise ValueError(f"labels must be [H, W], got shape {labels.shape}")
    if not maps:
        return []
    h, w = maps[0].shape
    if any(m.shape != (h, w) for m in maps):
        raise ValueError(f"label maps differ in shape: {[m.shape for m in maps]}")
    rgb = _check_image(img, h, w)
    if n_labels < 1:
        raise ValueError(f"n_labels must be >= 1, got {n_labels}")
    for labels in maps:
        if labels.size and (labels.min() < 0 or labels.max() >= n_labels):
            raise ValueError(f"labels must lie in 0..{n_labels - 1}, "
                             f"got {labels.min()}..{labels.max()}")
    if n_labels == 1:  # one label: nothing to decide (and the unary would divide by zero)
        return [np.zeros((h, w), np.int64) for _ in maps]
    return [np.argmax(q, axis=0) for q in _label_marginals(rgb, maps, n_labels, t, gt_prob)]


def _label_marginals(rgb: np.ndarray, maps: list[np.ndarray], n_labels: int, t: int,
                     gt_prob: float) -> list[np.ndarray]:
    """Each map's CRF marginals float32 [n_labels, H, W], the pairwise terms built once."""
    dcrf = _densecrf()
    from pydensecrf.utils import unary_from_labels

    h, w = rgb.shape[:2]
    crf = dcrf.DenseCRF2D(w, h, n_labels)
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=50, srgb=5, rgbim=rgb, compat=10)
    out: list[np.ndarray] = []
    for n, labels in enumerate(maps):
        same = next((k for k in range(n) if np.array_equal(maps[k], labels)), None)
        if same is not None:  # the same unary gives the same answer: no second inference
            out.append(out[same])
            continue
        crf.setUnaryEnergy(unary_from_labels(labels.astype(np.int64), n_labels, gt_prob=gt_prob,
                                             zero_unsure=False))
        out.append(np.asarray(crf.inference(t)).reshape(n_labels, h, w))
    return out


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
