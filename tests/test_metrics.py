"""Metrics against hand-computed counts, and the one-pass threshold sweep against brute force."""
from __future__ import annotations

import math

import numpy as np
import pytest

from csdseg.evaluation import metrics

GT = np.array([[0, 0, 1], [1, 2, 255], [2, 2, 0]])
PRED = np.array([[0, 1, 1], [1, 1, 2], [2, 0, 0]])
# pairs (gt, pred) without the void pixel: (0,0) x2, (0,1), (1,1) x2, (2,1), (2,2), (2,0)
EXPECTED = np.array([[2, 1, 0],
                     [0, 2, 0],
                     [1, 1, 1]])


def test_confusion_matrix_by_hand_skips_void():
    conf = metrics.confusion_matrix(GT, PRED, 3)
    np.testing.assert_array_equal(conf, EXPECTED)
    assert conf.sum() == 8  # 9 pixels, one void


def test_iou_accuracy_precision_recall_by_hand():
    iou = metrics.iou_per_class(EXPECTED)
    np.testing.assert_allclose(iou, [2 / 4, 2 / 4, 1 / 3])
    assert metrics.mean_iou(EXPECTED) == pytest.approx(4 / 9)
    assert metrics.pixel_accuracy(EXPECTED) == pytest.approx(5 / 8)
    precision, recall = metrics.precision_recall(EXPECTED)
    np.testing.assert_allclose(precision, [2 / 3, 2 / 4, 1.0])
    np.testing.assert_allclose(recall, [2 / 3, 1.0, 1 / 3])


def test_confusion_is_dataset_level_not_mean_of_images():
    # image 1: 1 pixel of class 1, right; image 2: 3 pixels of class 1, all called background
    a = metrics.confusion_matrix(np.array([[1]]), np.array([[1]]), 2)
    b = metrics.confusion_matrix(np.array([[1, 1, 1]]), np.array([[0, 0, 0]]), 2)
    iou = metrics.iou_per_class(a + b)
    assert iou[1] == pytest.approx(1 / 4)  # a per-image mean would give (1 + 0) / 2


def test_iou_nan_for_absent_class_and_zero_for_false_positive_only():
    conf = metrics.confusion_matrix(GT, PRED, 5)
    conf[0, 3] += 1  # class 3: predicted once, never in the gt -> IoU 0, counted in the mean
    iou = metrics.iou_per_class(conf)
    assert iou[3] == 0.0
    assert math.isnan(iou[4])  # class 4: in neither -> NaN, left out of the mean
    assert metrics.mean_iou(conf) == pytest.approx((2 / 5 + 2 / 4 + 1 / 3 + 0) / 4)


def test_prediction_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="prediction holds values outside 0..2"):
        metrics.confusion_matrix(GT, np.full((3, 3), 3), 3)


def test_average_precision_by_hand_with_ties():
    # ranking 1, 0, 1, 0: precision 1 at recall 1/2, 2/3 at recall 1
    assert metrics.average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(
        0.5 * 1 + 0.5 * 2 / 3)
    # the tied pair is one operating point: precision 1/2 at recall 1/2, then 2/3 at recall 1
    assert metrics.average_precision([1, 0, 1], [0.5, 0.5, 0.2]) == pytest.approx(
        0.5 * 0.5 + 0.5 * 2 / 3)
    labels = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 1]])
    scores = np.array([[0.9, 0.1, 0.2], [0.3, 0.2, 0.8], [0.4, 0.3, 0.1]])
    mean, ap = metrics.mean_average_precision(labels, scores)
    # class 0: ranks 0.9 (1), 0.4 (1) -> 1; class 2: 0.8 (1), 0.2 (0), 0.1 (1) -> 1/2 + 1/2 * 2/3
    np.testing.assert_allclose(ap[[0, 2]], [1.0, 0.5 + 1 / 3])
    assert math.isnan(ap[1])  # no positive
    assert mean == pytest.approx((1.0 + 0.5 + 1 / 3) / 2)


def test_cam_to_labels_by_hand_ties_go_to_background():
    keys = np.array([2, 0])  # channel 0 is class index 2 (label 3), channel 1 is label 1
    high_res = np.array([[[0.15, 0.5, 0.1], [0.3, 0.3, 0.0]],
                         [[0.10, 0.6, 0.15], [0.3, 0.2, 0.0]]], dtype=np.float32)
    expected = np.array([[0, 1, 0], [3, 3, 0]])  # 0.15 == threshold -> background
    np.testing.assert_array_equal(metrics.cam_to_labels(high_res, keys, 0.15), expected)
    score, cls = metrics.fg_max_and_class(high_res, keys)
    bucket = metrics.threshold_buckets(score, np.array([0.15]))
    np.testing.assert_array_equal(np.where(bucket > 0, cls, 0), expected)
    # no keys: everything is background
    empty = metrics.cam_to_labels(np.zeros((0, 2, 3), np.float32), np.zeros(0, int), 0.15)
    np.testing.assert_array_equal(empty, np.zeros((2, 3)))


def test_fast_sweep_equals_naive_argmax_per_threshold():
    rng = np.random.default_rng(0)
    thresholds = np.array([round(0.01 * i, 10) for i in range(61)])
    num_classes = 6
    naive = np.zeros((len(thresholds), num_classes, num_classes), np.int64)
    hist = np.zeros((num_classes, num_classes, len(thresholds) + 1), np.int64)
    for n in range(8):
        h, w = rng.integers(5, 12, size=2)
        k = int(rng.integers(0, 4))  # image 0.. may have no keys at all
        keys = np.sort(rng.choice(num_classes - 1, size=k, replace=False))
        # scores on the 0.01 grid make exact ties with the thresholds common
        high_res = (rng.integers(0, 70, size=(k, h, w)) * 0.01).astype(np.float32)
        gt = rng.integers(0, num_classes, size=(h, w))
        gt[rng.random((h, w)) < 0.1] = 255
        for j, t in enumerate(thresholds):
            naive[j] += metrics.confusion_matrix(gt, metrics.cam_to_labels(high_res, keys, t),
                                                 num_classes)
        score, cls = metrics.fg_max_and_class(high_res, keys)
        bucket = metrics.threshold_buckets(score, thresholds)
        hist += metrics.bucket_histogram(gt, cls, bucket, num_classes, len(thresholds))
    fast = metrics.sweep_confusions(hist)
    np.testing.assert_array_equal(fast, naive)
    # rows are independent: a subset of gt classes gives those rows (the co-occurrence path)
    np.testing.assert_array_equal(metrics.sweep_confusions(hist[[1, 4]]), naive[:, [1, 4]])
    assert len({int(c.trace()) for c in naive}) > 5  # the sweep really changes the labels


def test_label_group_single_multi_none():
    assert metrics.label_group(np.array([], np.int64)) is None  # no class: neither group
    assert metrics.label_group(np.array([3])) == 0
    assert metrics.label_group(np.array([0, 2])) == 1 and metrics.label_group(np.arange(3)) == 1


# a 4x4 image labelled {1, 2} (indices 0, 1); a class-3 pixel (index 2) it is not labelled with
CO_GT = np.array([[1, 1, 1, 1],
                  [2, 2, 2, 2],
                  [0, 0, 0, 3],
                  [0, 0, 0, 255]])
CO_PRED = np.array([[2, 2, 2, 1],  # 3 of 4 class-1 pixels predicted as 2
                    [1, 0, 0, 2],  # class 2: 1 as class 1, 2 as background, 1 right
                    [0, 3, 0, 1],
                    [0, 0, 0, 1]])


def _pair_counts(images, k=3, lead=()):
    """Sum :func:`metrics.add_cooccurrence` over (confusion rows, present) of each image."""
    num, den = np.zeros((*lead, k, k), np.int64), np.zeros((*lead, k, k), np.int64)
    seen = np.zeros((k, k), np.int64)
    for rows, present in images:
        metrics.add_cooccurrence(num, den, seen, rows, np.array(present))
    return num, den, seen


def test_cooccurrence_counts_by_hand_ordered_pairs():
    conf = metrics.confusion_matrix(CO_GT, CO_PRED, 4)
    num, den, seen = _pair_counts([(conf[[1, 2]], [0, 1])])
    expected_num = np.zeros((3, 3), np.int64)
    expected_num[0, 1], expected_num[1, 0] = 3, 1  # (a, b) and (b, a) differ
    expected_den = np.zeros((3, 3), np.int64)
    expected_den[0, 1], expected_den[1, 0] = 4, 4
    np.testing.assert_array_equal(num, expected_num)
    np.testing.assert_array_equal(den, expected_den)
    np.testing.assert_array_equal(seen, [[0, 1, 0], [1, 0, 0], [0, 0, 0]])
    share = metrics.cooccurrence_shares(num, den, seen)
    assert share[0, 1] == 0.75 and share[1, 0] == 0.25
    # class 3 is in the gt (predicted as 1) but not in the image-level labels: no pair
    assert np.isnan(share[2, 0]) and np.isnan(share[0, 2]) and np.isnan(np.diag(share)).all()
    # a single-label image gives no pair at all
    assert not any(x.any() for x in _pair_counts([(conf[[1]], [0])]))
    with pytest.raises(ValueError, match="1 confusion rows for 2 classes"):
        _pair_counts([(conf[[1]], [0, 1])])


def test_cooccurrence_summed_over_images_leading_axes_and_zero_pixel_pairs():
    first = metrics.confusion_matrix(CO_GT, CO_PRED, 4)
    # image 2, labelled {1, 3}: 1 of 2 class-1 pixels predicted as 3, no class-3 pixel at all
    second = metrics.confusion_matrix(np.array([[1, 1, 0]]), np.array([[3, 1, 0]]), 4)
    both = np.stack([first, second])  # a leading axis (e.g. thresholds) is kept
    num, den, seen = _pair_counts([(both[:, [1, 2]], [0, 1])], lead=(2,))
    assert num[0, 0, 1] == 3 and num[1, 0, 1] == 0 and den[1, 0, 1] == 2
    num, den, seen = _pair_counts([(first[[1, 2]], [0, 1]), (second[[1, 3]], [0, 2])])
    share = metrics.cooccurrence_shares(num, den, seen)
    assert share[0, 1] == 0.75 and share[1, 0] == 0.25 and share[0, 2] == 0.5
    assert seen[2, 0] == 1 and np.isnan(share[2, 0])  # co-occur, but 0 class-3 pixels
    assert np.isnan(share[1, 2]) and np.isnan(share[2, 1])  # classes 2 and 3 never co-occur
    # the same pair in two images adds up: 3 + 3 of 4 + 4 -> 0.75 again, seen twice
    num, den, seen = _pair_counts([(first[[1, 2]], [0, 1])] * 2)
    assert num[0, 1] == 6 and den[0, 1] == 8 and seen[0, 1] == 2
