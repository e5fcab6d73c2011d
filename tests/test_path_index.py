"""PathIndex and boundary -> affinity against brute-force enumeration."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from csdseg.ops.affinity import affinity_labels, boundary_to_affinity, walk_affinity
from csdseg.ops.path_index import PathIndex, path_cells, search_directions


def brute_pairs(h: int, w: int, radius: int) -> set[tuple[int, int]]:
    """Every unordered pair of distinct cells closer than ``radius``, as (min, max) flat ids."""
    pairs = set()
    for a in range(h * w):
        for b in range(a + 1, h * w):
            (ya, xa), (yb, xb) = divmod(a, w), divmod(b, w)
            if (ya - yb) ** 2 + (xa - xb) ** 2 < radius ** 2:
                pairs.add((a, b))
    return pairs


@pytest.mark.parametrize("radius", [2, 5, 10])
def test_directions_are_one_of_each_opposite_pair(radius: int) -> None:
    dirs = search_directions(radius)
    assert len(set(dirs)) == len(dirs)
    assert not any((-dy, -dx) in set(dirs) for dy, dx in dirs)
    everything = {(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
                  if 0 < dy * dy + dx * dx < radius * radius}
    assert set(dirs) | {(-dy, -dx) for dy, dx in dirs} == everything
    assert len(dirs) == {2: 4, 5: 34}.get(radius, len(dirs))


@pytest.mark.parametrize("h,w,radius", [(7, 9, 3), (12, 11, 5), (6, 6, 5)])
def test_all_pairs_match_brute_force(h: int, w: int, radius: int) -> None:
    src, dst, direction = PathIndex(radius).all_pairs(h, w)
    got = [tuple(sorted(p)) for p in zip(src.tolist(), dst.tolist())]
    assert len(got) == len(set(got))  # no duplicates
    assert set(got) == brute_pairs(h, w, radius)
    offsets = PathIndex(radius).offsets[direction]
    np.testing.assert_array_equal(dst // w - src // w, offsets[:, 0])
    np.testing.assert_array_equal(dst % w - src % w, offsets[:, 1])


def test_cropped_layout_borders() -> None:
    index = PathIndex(5)
    h, w = 12, 15
    src, dst = index.cropped_pairs(h, w)
    hc, wc = index.cropped_size(h, w)
    assert (hc, wc) == (8, 7) and src.shape == (56,) and dst.shape == (34, 56)
    ys, xs = src // w, src % w
    assert ys.min() == 0 and ys.max() == h - 5 and xs.min() == 4 and xs.max() == w - 5
    assert dst.min() >= 0 and dst.max() < h * w
    np.testing.assert_array_equal(dst // w - ys, np.repeat(index.offsets[:, :1], 56, axis=1))


def test_path_cells() -> None:
    np.testing.assert_array_equal(path_cells(0, 3), [[0, 3], [0, 2], [0, 1], [0, 0]])
    # cells whose centre is < 1 from the line: a diagonal keeps its two side bands
    assert {tuple(c) for c in path_cells(2, 2)} == {(y, x) for y in range(3) for x in range(3)
                                                     if abs(x - y) <= 1}
    assert len(path_cells(1, -3)) == 8  # (x + 3y)^2 < 10 holds on the whole 2x4 box
    assert {tuple(c) for c in path_cells(2, 5)} == ({(0, 0), (0, 1), (0, 2), (2, 3), (2, 4), (2, 5)}
                                                     | {(1, x) for x in range(6)})
    index = PathIndex(10)
    lengths = [len(p) for p in index.paths]
    assert lengths == sorted(lengths)  # grouped by path length, as IRN
    np.testing.assert_array_equal(index.offsets, [p[0] for p in index.paths])


def direct_affinity(boundary: np.ndarray, a: int, b: int) -> float:
    """1 - max boundary over cells whose centre is < 1 from the line a-b, inside its box."""
    w = boundary.shape[1]
    (ya, xa), (yb, xb) = divmod(a, w), divmod(b, w)
    dy, dx = yb - ya, xb - xa
    best = 0.0
    for y in range(min(ya, yb), max(ya, yb) + 1):
        for x in range(min(xa, xb), max(xa, xb) + 1):
            if (dy * (x - xa) - dx * (y - ya)) ** 2 < dy * dy + dx * dx:
                best = max(best, boundary[y, x])
    return 1.0 - best


def test_vertical_boundary_line() -> None:
    h, w, col = 10, 12, 6
    boundary = np.zeros((h, w), np.float32)
    boundary[:, col] = 1.0
    src, dst, aff = walk_affinity(torch.from_numpy(boundary), PathIndex(5), beta=1.0)
    xs, xd = src.numpy() % w, dst.numpy() % w
    crosses = (np.minimum(xs, xd) <= col) & (np.maximum(xs, xd) >= col)
    np.testing.assert_array_equal(aff.numpy(), np.where(crosses, 0.0, 1.0))


def test_walk_affinity_matches_direct_formula() -> None:
    rng = np.random.default_rng(0)
    boundary = rng.random((9, 11)).astype(np.float32)
    src, dst, aff = walk_affinity(torch.from_numpy(boundary), PathIndex(5), beta=10.0)
    expected = [direct_affinity(boundary, a, b) ** 10 for a, b in zip(src.tolist(), dst.tolist())]
    np.testing.assert_allclose(aff.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_cropped_affinity_matches_direct_formula_and_has_gradients() -> None:
    rng = np.random.default_rng(1)
    index = PathIndex(4)
    boundary = torch.from_numpy(rng.random((2, 8, 10)).astype(np.float32)).requires_grad_()
    aff = boundary_to_affinity(boundary, index)
    src, dst = index.cropped_pairs(8, 10)
    assert aff.shape == (2, index.num_directions, src.size)
    b1 = boundary[1].detach().numpy()
    expected = [[direct_affinity(b1, s, t) for s, t in zip(src, row)] for row in dst]
    np.testing.assert_allclose(aff[1].detach().numpy(), expected, rtol=1e-6)
    aff.sum().backward()
    assert boundary.grad is not None and boundary.grad.abs().sum() > 0


def test_affinity_labels() -> None:
    label = np.array([[0, 0, 1, 1, 255, 2]], dtype=np.uint8)
    src = np.array([0, 1, 2, 3])
    dst = np.array([[1, 2, 3, 4], [2, 3, 5, 5]])
    bg, fg, neg = affinity_labels(label, src, dst)
    np.testing.assert_array_equal(bg, [[1, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(fg, [[0, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(neg, [[0, 1, 0, 0], [1, 1, 1, 1]])
