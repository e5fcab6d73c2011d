"""Confident labels (IRN's cam_to_ir_label), CSD's fg/bg split, map_ids; the stage: tests/test_make_ir_label.py."""
from __future__ import annotations

import numpy as np
import pytest

import csdseg.ops.confident_labels as cl
from csdseg.ops.confident_labels import confident_labels, split_fg_bg
from csdseg.ops.parallel import map_ids, resolve_workers


def one_class_cam(columns: dict[tuple[int, int], float], key: int = 14) -> dict:
    """8x8 CAM for one class whose value is constant per column range."""
    cam = np.zeros((1, 8, 8), np.float32)
    for (lo, hi), value in columns.items():
        cam[0, :, lo:hi] = value
    return {"keys": np.array([key]), "cam": cam[:, ::4, ::4], "high_res": cam}


def test_thresholding_by_hand():
    # columns: 0.00 | 0.04 | 0.05 (tie) | 0.10 | 0.30 (tie) | 0.31 | 0.90 | 0.90
    cam = one_class_cam({(0, 1): 0.0, (1, 2): 0.04, (2, 3): 0.05, (3, 4): 0.10, (4, 5): 0.30,
                         (5, 6): 0.31, (6, 8): 0.90})
    img = np.full((8, 8, 3), 128, np.uint8)
    conf = confident_labels(img, cam, crf_iters=0)
    # below 0.05 (a tie goes to the background channel, listed first): confident background;
    # between the thresholds (0.30 included): uncertain; above 0.30: class 14 -> label 15
    expected_row = [0, 0, 0, 255, 255, 15, 15, 15]
    np.testing.assert_array_equal(conf, np.tile(expected_row, (8, 1)))
    assert conf.dtype == np.uint8


def test_strongest_class_wins_and_empty_keys_are_all_background():
    cam = np.zeros((2, 8, 8), np.float32)
    cam[0, :, :4], cam[1, :, :4] = 0.6, 0.4  # class 2 beats class 7
    cam[0, :, 4:], cam[1, :, 4:] = 0.1, 0.35  # class 7 alone passes 0.30
    img = np.zeros((8, 8, 3), np.uint8)
    conf = confident_labels(img, {"keys": np.array([2, 7]), "high_res": cam}, crf_iters=0)
    np.testing.assert_array_equal(conf[:, :4], 3)
    np.testing.assert_array_equal(conf[:, 4:], 8)
    empty = {"keys": np.zeros(0, np.int64), "high_res": np.zeros((0, 8, 8), np.float32)}
    np.testing.assert_array_equal(confident_labels(img, empty), 0)


def test_foreground_of_the_strict_map_is_kept_when_the_lenient_map_says_background(monkeypatch):
    """IRN sets 0 only where fg + bg == 0: a strict-map class survives a lenient-map 0."""
    calls = []

    def fake_crf(img, maps, n_labels, t):
        calls.append(t)
        return [maps[0], np.zeros_like(maps[1])]  # the bg map says background everywhere

    monkeypatch.setattr(cl, "crf_inference_labels", fake_crf)
    cam = one_class_cam({(0, 4): 0.1, (4, 8): 0.9}, key=0)
    conf = confident_labels(np.zeros((8, 8, 3), np.uint8), cam)
    np.testing.assert_array_equal(conf, np.tile([0, 0, 0, 0, 1, 1, 1, 1], (8, 1)))
    assert calls == [10]  # one call: both maps share the CRF's pairwise terms


def test_crf_moves_uncertain_bands_onto_the_colour_edge():
    img = np.empty((32, 32, 3), np.uint8)
    img[:, :16], img[:, 16:] = (30, 30, 30), (220, 200, 40)  # object = right half
    cam = np.zeros((1, 32, 32), np.float32)
    cam[0, :, 12:20] = 0.2  # weak band straddling the edge: spill left, under-activation right
    cam[0, :, 20:] = 0.6
    record = {"keys": np.array([6]), "high_res": cam}
    plain = confident_labels(img, record, crf_iters=0)
    assert (plain[:, 12:20] == 255).all()
    refined = confident_labels(img, record)
    np.testing.assert_array_equal(refined[:, :16], 0)
    np.testing.assert_array_equal(refined[:, 16:], 7)


def irn_cam_to_ir_label(img: np.ndarray, cams: np.ndarray, class_keys: np.ndarray) -> np.ndarray:
    """IRN's step/cam_to_ir_label.py for one image, step for step: padded argmax per
    threshold, two independent CRFs (misc/imutils.crf_inference_label), then the combination."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_labels

    keys = np.pad(class_keys + 1, (1, 0), mode="constant")
    h, w = img.shape[:2]

    def crf(labels: np.ndarray) -> np.ndarray:
        n = keys.shape[0]
        d = dcrf.DenseCRF2D(w, h, n)
        d.setUnaryEnergy(unary_from_labels(labels, n, gt_prob=0.7, zero_unsure=False))
        d.addPairwiseGaussian(sxy=3, compat=3)
        d.addPairwiseBilateral(sxy=50, srgb=5, rgbim=np.ascontiguousarray(np.copy(img)), compat=10)
        return np.argmax(np.array(d.inference(10)).reshape((n, h, w)), axis=0)

    fg = keys[crf(np.argmax(np.pad(cams, ((1, 0), (0, 0), (0, 0)), constant_values=0.30), 0))]
    bg = keys[crf(np.argmax(np.pad(cams, ((1, 0), (0, 0), (0, 0)), constant_values=0.05), 0))]
    conf = fg.copy()
    conf[fg == 0] = 255
    conf[bg + fg == 0] = 0
    return conf.astype(np.uint8)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_confident_labels_equal_irns_on_the_same_cams(k):
    """The fast path (one argmax for both thresholds, one CRF's kernels for both maps) gives
    IRN's labels exactly, ties at the thresholds included."""
    rng = np.random.default_rng(k)
    h, w = 45, 70
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.clip(rng.normal(110, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    cams = np.empty((k, h, w), np.float32)
    for c in range(k):
        cy, cx, r = rng.uniform(10, 35), rng.uniform(10, 60), rng.uniform(8, 20)
        cams[c] = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        img[cams[c] > 0.4] = rng.integers(0, 256, 3)
    cams /= cams.max(axis=(1, 2), keepdims=True)
    cams[:, :3] = 0.30  # exact ties with both thresholds: the background channel wins
    cams[:, 3:6] = 0.05
    keys = np.sort(rng.choice(20, k, replace=False))
    expected = irn_cam_to_ir_label(img, cams, keys)
    got = confident_labels(img, {"keys": keys, "high_res": cams})
    assert len(np.unique(expected)) == k + 2  # every class, background and uncertain occur
    np.testing.assert_array_equal(got, expected)


def test_confident_labels_rejects_bad_input():
    cam = one_class_cam({(0, 8): 0.5})
    with pytest.raises(ValueError, match=r"image is \(8, 9\) but high_res is \(8, 8\)"):
        confident_labels(np.zeros((8, 9, 3), np.uint8), cam)
    with pytest.raises(ValueError, match="must not exceed fg_threshold"):
        confident_labels(np.zeros((8, 8, 3), np.uint8), cam, fg_threshold=0.1, bg_threshold=0.2)


def test_split_fg_bg():
    conf = np.array([[0, 1, 255], [20, 0, 255]], np.uint8)
    fg, bg = split_fg_bg(conf)
    np.testing.assert_array_equal(fg, [[False, True, False], [True, False, False]])
    np.testing.assert_array_equal(bg, [[True, False, False], [False, True, False]])
    assert fg.dtype == bool and bg.dtype == bool


# --- map_ids --------------------------------------------------------------------------------


def test_map_ids_pool_equals_inline_and_keeps_order():
    ids = [f"img{i:03d}" for i in range(23)]
    assert map_ids(str.upper, ids, workers=2) == map_ids(str.upper, ids, workers=1)
    assert map_ids(str.upper, ids, workers=2) == [i.upper() for i in ids]
    assert map_ids(str.upper, [], workers=2) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_map_ids_errors_name_the_id(workers):
    with pytest.raises(ValueError, match=r"^image 2007_x: invalid literal for int\(\)"):
        map_ids(int, ["1", "2", "2007_x", "4"], workers=workers)


def test_resolve_workers():
    import os

    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert resolve_workers(0) == expected
    assert resolve_workers(8, num_items=3) == 3
    with pytest.raises(ValueError, match="workers must be >= 0"):
        resolve_workers(-1)

