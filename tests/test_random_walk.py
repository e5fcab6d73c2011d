"""The sparse random walk against dense matrix powers (IRN's algorithm)."""
from __future__ import annotations

import numpy as np
import torch

from csdseg.ops.path_index import PathIndex
from csdseg.ops.random_walk import (dense_random_walk, propagate, random_walk, transition_matrix,
                                    walk_to_labels)


def test_sparse_propagation_equals_dense_power_on_random_graph() -> None:
    rng = np.random.default_rng(0)
    n, m, steps = 40, 120, 2 ** 6
    src = rng.integers(0, n, m)
    dst = (src + rng.integers(1, n, m)) % n  # no self loops
    pairs = np.unique(np.sort(np.stack([src, dst], 1), axis=1), axis=0)
    aff = rng.random(len(pairs))
    a = np.eye(n)
    a[pairs[:, 0], pairs[:, 1]] = aff
    a[pairs[:, 1], pairs[:, 0]] = aff
    p = a / a.sum(axis=1, keepdims=True)
    x = rng.random((n, 3))
    expected = np.linalg.matrix_power(p, steps) @ x
    trans = transition_matrix(torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1]),
                              torch.from_numpy(aff).float(), n)
    got = propagate(trans, torch.from_numpy(x).float(), steps)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


def official_reference(cams: np.ndarray, boundary: np.ndarray, beta: float, exp_times: int,
                       radius: int) -> np.ndarray:
    """IRN's propagate_to_edge written out in float64 from brute-force pair enumeration."""
    c, h, w = cams.shape
    n = h * w
    a = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            (yi, xi), (yj, xj) = divmod(i, w), divmod(j, w)
            dy, dx = yj - yi, xj - xi
            if dy * dy + dx * dx >= radius * radius:
                continue
            worst = max(boundary[y, x]
                        for y in range(min(yi, yj), max(yi, yj) + 1)
                        for x in range(min(xi, xj), max(xi, xj) + 1)
                        if (dy * (x - xi) - dx * (y - yi)) ** 2 < dy * dy + dx * dx)
            a[i, j] = a[j, i] = (1 - worst) ** beta
    t = a / a.sum(axis=0, keepdims=True)  # column-normalised, as the official code
    for _ in range(exp_times):
        t = t @ t
    return ((cams * (1 - boundary)).reshape(c, n) @ t).reshape(c, h, w)


def test_random_walk_equals_official_dense_algorithm() -> None:
    rng = np.random.default_rng(1)
    h, w = 9, 13
    boundary = np.zeros((h, w))
    boundary[:, 6] = 0.9  # a wall the walk should hardly cross
    boundary += 0.1 * rng.random((h, w))
    cams = rng.random((2, h, w))
    expected = official_reference(cams, boundary, beta=10.0, exp_times=5, radius=5)
    got = random_walk(torch.from_numpy(cams).float(), torch.from_numpy(boundary).float(),
                      beta=10.0, exp_times=5, radius=5)
    assert got.shape == (2, h, w)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4)
    dense = dense_random_walk(torch.from_numpy(cams), torch.from_numpy(boundary), 10.0, 5, 5)
    np.testing.assert_allclose(dense.numpy(), expected, atol=1e-8)
    # mass spreads within each side of the wall, not across it
    left, right = got.numpy()[:, :, :5], got.numpy()[:, :, 8:]
    assert left.std(axis=(1, 2)).max() < 0.05 and right.std(axis=(1, 2)).max() < 0.05


def test_random_walk_full_size_exp8_matches_dense() -> None:
    rng = np.random.default_rng(2)
    h, w = 20, 24
    boundary = torch.from_numpy(rng.random((h, w)).astype(np.float32) ** 4)
    cams = torch.from_numpy(rng.random((3, h, w)).astype(np.float32))
    dense = dense_random_walk(cams.double(), boundary.double(), 10.0, 8, 5)
    got = random_walk(cams, boundary, 10.0, 8, 5)
    np.testing.assert_allclose(got.numpy(), dense.numpy(), atol=1e-4)


def test_walk_to_labels() -> None:
    rw = torch.zeros(2, 3, 4)
    rw[0, :, :2] = 2.0  # channel 0 (class 4) on the left, strong
    rw[1, :, 3] = 0.4   # channel 1 (class 11) on the right, 0.2 after max-normalising
    labels = walk_to_labels(rw, np.array([4, 11]), size=(10, 15), bg_threshold=0.25)
    assert labels.shape == (10, 15) and labels.dtype == np.uint8
    assert labels[5, 0] == 5 and labels[5, 14] == 0
    labels = walk_to_labels(rw, np.array([4, 11]), size=(10, 15), bg_threshold=0.1)
    assert labels[5, 14] == 12 and set(np.unique(labels)) <= {0, 5, 12}


def test_radius_default_direction_count() -> None:
    assert PathIndex(5).num_directions == 34
