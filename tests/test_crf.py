"""Dense CRF wrappers: edge alignment on a two-region image, official settings, errors."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from csdseg.ops.crf import (SOFTMAX_PRESETS, _label_marginals, crf_inference_label,
                            crf_inference_labels, crf_inference_softmax)

H, W = 40, 60
EDGE = 27  # the colour edge sits off the image centre, so a symmetric blur cannot find it


def two_region_image() -> tuple[np.ndarray, np.ndarray]:
    """An image with a flat dark-blue left part and a flat orange right part, and its region map."""
    img = np.empty((H, W, 3), np.uint8)
    img[:, :EDGE] = (20, 40, 120)
    img[:, EDGE:] = (230, 140, 30)
    regions = np.zeros((H, W), np.int64)
    regions[:, EDGE:] = 1
    return img, regions


def noisy_labels(regions: np.ndarray, flip: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = regions.copy()
    mask = rng.random(regions.shape) < flip
    noisy[mask] = 1 - noisy[mask]
    noisy[:, EDGE - 5:EDGE] = 1  # a coarse map overshoots the object by 5 px
    return noisy


def test_label_crf_snaps_noisy_labels_to_the_colour_edge():
    img, regions = two_region_image()
    labels = noisy_labels(regions, flip=0.2)
    before = (labels == regions).mean()
    out = crf_inference_label(img, labels, n_labels=2)
    after = (out == regions).mean()
    assert before < 0.75
    assert after > 0.99
    assert out.shape == (H, W)


def test_label_crf_matches_irn_settings_exactly():
    """Same answer as a direct pydensecrf call with IRN's misc/imutils.py settings."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_labels

    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, (H, W))
    d = dcrf.DenseCRF2D(W, H, 3)
    d.setUnaryEnergy(unary_from_labels(labels, 3, gt_prob=0.7, zero_unsure=False))
    d.addPairwiseGaussian(sxy=3, compat=3)
    d.addPairwiseBilateral(sxy=50, srgb=5, rgbim=np.ascontiguousarray(img), compat=10)
    expected = np.argmax(np.array(d.inference(10)).reshape(3, H, W), axis=0)
    np.testing.assert_array_equal(crf_inference_label(img, labels, n_labels=3), expected)


def test_label_crf_edge_cases():
    img, regions = two_region_image()
    np.testing.assert_array_equal(crf_inference_label(img, regions, n_labels=2, t=0), regions)
    np.testing.assert_array_equal(crf_inference_label(img, np.zeros((H, W), int), n_labels=1),
                                  np.zeros((H, W)))
    # a non-contiguous (flipped) image view is read correctly
    flipped = crf_inference_label(img[:, ::-1], regions[:, ::-1], n_labels=2)
    np.testing.assert_array_equal(flipped, regions[:, ::-1])
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1, got 0\.\.2"):
        crf_inference_label(img, regions * 2, n_labels=2)
    with pytest.raises(ValueError, match="img must be uint8"):
        crf_inference_label(img.astype(np.float32), regions, n_labels=2)
    with pytest.raises(ValueError, match=r"img is \(40, 60\) but the labels/scores are \(40, 59\)"):
        crf_inference_label(img, regions[:, :-1], n_labels=2)


def own_crf_marginals(img: np.ndarray, labels: np.ndarray, n_labels: int) -> np.ndarray:
    """IRN's misc/imutils.crf_inference_label before its argmax: a CRF of its own per map."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_labels

    h, w = labels.shape
    d = dcrf.DenseCRF2D(w, h, n_labels)
    d.setUnaryEnergy(unary_from_labels(labels, n_labels, gt_prob=0.7, zero_unsure=False))
    d.addPairwiseGaussian(sxy=3, compat=3)
    d.addPairwiseBilateral(sxy=50, srgb=5, rgbim=np.ascontiguousarray(np.copy(img)), compat=10)
    return np.array(d.inference(10)).reshape(n_labels, h, w)


@pytest.mark.parametrize("n_labels", [2, 3, 5])
def test_shared_pairwise_terms_give_each_map_its_own_crfs_answer_bit_for_bit(n_labels):
    """crf_inference_labels builds the kernels once for all maps of an image: every map's
    marginals must still be exactly those of an independent CRF (n_labels 2 takes
    pydensecrf's scalar lattice code, 3 and 5 its SSE code)."""
    rng = np.random.default_rng(n_labels)
    img, _ = two_region_image()
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    maps = [rng.integers(0, n_labels, (H, W)) for _ in range(3)]
    maps[1][:, :EDGE] = 0  # maps that differ a lot and a little
    maps.append(maps[0].copy())  # a repeat is answered without a second inference
    marginals = _label_marginals(np.ascontiguousarray(img), maps, n_labels, 10, 0.7)
    for labels, q in zip(maps, marginals):
        np.testing.assert_array_equal(q, own_crf_marginals(img, labels, n_labels))
    out = crf_inference_labels(img, maps, n_labels=n_labels)
    for labels, got in zip(maps, out):
        np.testing.assert_array_equal(got, own_crf_marginals(img, labels, n_labels).argmax(0))
        assert got.dtype == np.int64
    assert crf_inference_labels(img, [], n_labels=2) == []
    with pytest.raises(ValueError, match="label maps differ in shape"):
        crf_inference_labels(img, [maps[0], maps[0][:, :-1]], n_labels=n_labels)


def test_softmax_crf_snaps_uncertain_probabilities_to_the_colour_edge():
    img, regions = two_region_image()
    rng = np.random.default_rng(2)
    # weakly right on average, wrong on a third of the pixels, and spilling past the edge
    p1 = np.where(regions == 1, 0.6, 0.4) + rng.normal(0, 0.15, regions.shape)
    p1[:, EDGE - 6:EDGE] = 0.65
    p1 = np.clip(p1, 0.02, 0.98)
    probs = np.stack([1 - p1, p1]).astype(np.float32)
    before = (probs.argmax(0) == regions).mean()
    q = crf_inference_softmax(img, probs)
    after = (q.argmax(0) == regions).mean()
    assert before < 0.8
    assert after > 0.99
    assert q.shape == (2, H, W) and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-4)


def test_softmax_crf_defaults_are_deeplab_v2():
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    logits = rng.normal(size=(4, H, W))
    probs = (np.exp(logits) / np.exp(logits).sum(0)).astype(np.float32)
    d = dcrf.DenseCRF2D(W, H, 4)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    d.addPairwiseGaussian(sxy=1, compat=3)
    d.addPairwiseBilateral(sxy=67, srgb=3, rgbim=np.ascontiguousarray(img), compat=4)
    expected = np.array(d.inference(10)).reshape(4, H, W)
    np.testing.assert_allclose(crf_inference_softmax(img, probs), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        crf_inference_softmax(img, probs, **SOFTMAX_PRESETS["deeplab_v2"]), expected, rtol=1e-5,
        atol=1e-6)


def test_missing_pydensecrf_gives_an_install_hint(monkeypatch):
    img, regions = two_region_image()
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(ImportError, match=r"pip install pydensecrf2"):
        crf_inference_label(img, regions, n_labels=2)
