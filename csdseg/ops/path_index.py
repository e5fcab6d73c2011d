"""Which pixel pairs IRN relates, and the straight paths between them (IRN's PathIndex).

A pair is a source pixel ``s`` and a destination ``s + (dy, dx)`` with ``dy**2 + dx**2 <
radius**2``. Only one of each +/- pair is kept (``dy > 0``, or ``dy == 0`` and ``dx > 0``), so
each unordered pair appears once. The path of a displacement is every grid cell of its bounding
box whose centre lies less than one cell from the line through both endpoints; it includes both
endpoints. IRN lists directions grouped by path length (shortest first); the same order is used
here so that affinities, affinity labels and displacements line up channel by channel.

Two layouts of pairs on an ``h x w`` grid:

- *cropped* (IRN training): sources are rows ``[0, h - f)`` and columns ``[f, w - f)``, where
  ``f = radius - 1``, so every direction of every source lands inside the grid. Arrays are
  ``[D, Ns]`` with ``Ns = (h - f) * (w - 2f)``.
- *all pairs* (random walk): every pair whose both ends are inside the grid, as flat arrays.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np


def search_directions(radius: int) -> list[tuple[int, int]]:
    """The (dy, dx) half-plane displacements within ``radius`` (exclusive), IRN's search order."""
    if radius < 2:
        raise ValueError(f"radius must be >= 2, got {radius}")
    dirs = [(0, dx) for dx in range(1, radius)]
    for dy in range(1, radius):
        for dx in range(-radius + 1, radius):
            if dx * dx + dy * dy < radius * radius:
                dirs.append((dy, dx))
    return dirs


def path_cells(dy: int, dx: int) -> np.ndarray:
    """int64 [L, 2]: the cells on the straight path from (0, 0) to (dy, dx), farthest first."""
    length_sq = dy * dy + dx * dx
    cells = []
    for y in range(min(0, dy), max(0, dy) + 1):
        for x in range(min(0, dx), max(0, dx) + 1):
            # squared distance from the cell centre to the line through the endpoints
            if (dy * x - dx * y) ** 2 < length_sq:
                cells.append((y, x))
    cells.sort(key=lambda c: -abs(c[0]) - abs(c[1]))
    return np.asarray(cells, dtype=np.int64)


class PathIndex:
    """Directions and paths for one radius; index arrays for any grid size.

    Attributes: ``offsets`` int64 [D, 2] (dy, dx) per direction; ``paths`` a list of D arrays
    [L_d, 2]; ``groups`` a list of (direction ids [P], cells [P, L, 2]) per path length L.
    """

    def __init__(self, radius: int) -> None:
        self.radius = int(radius)
        self.floor = self.radius - 1  # how far a destination can reach sideways / down
        by_length: dict[int, list[np.ndarray]] = {}
        for dy, dx in search_directions(self.radius):
            cells = path_cells(dy, dx)
            by_length.setdefault(len(cells), []).append(cells)
        self.paths: list[np.ndarray] = []
        self.groups: list[tuple[np.ndarray, np.ndarray]] = []
        for length in sorted(by_length):
            ids = np.arange(len(self.paths), len(self.paths) + len(by_length[length]))
            self.paths.extend(by_length[length])
            self.groups.append((ids, np.stack(by_length[length])))
        self.offsets = np.stack([p[0] for p in self.paths])  # farthest cell = destination

    @property
    def num_directions(self) -> int:
        return len(self.paths)

    def cropped_size(self, h: int, w: int) -> tuple[int, int]:
        hc, wc = h - self.floor, w - 2 * self.floor
        if hc < 1 or wc < 1:
            raise ValueError(f"a {h}x{w} grid is too small for radius {self.radius}")
        return hc, wc

    def _shifted(self, h: int, w: int, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        """Flat indices of the cropped source block moved by (dy, dx): [..., Ns]."""
        hc, wc = self.cropped_size(h, w)
        ys, xs = np.meshgrid(np.arange(hc), np.arange(wc) + self.floor, indexing="ij")
        return (((ys.ravel() + dy[..., None]) * w) + xs.ravel() + dx[..., None]).astype(np.int64)

    def cropped_pairs(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """IRN's training layout: sources int64 [Ns], destinations int64 [D, Ns] (flat)."""
        zero = np.zeros(1, dtype=np.int64)
        src = self._shifted(h, w, zero, zero)[0]
        dst = self._shifted(h, w, self.offsets[:, 0], self.offsets[:, 1])
        return src, dst

    def cropped_paths(self, h: int, w: int) -> list[np.ndarray]:
        """Per length group, int64 [P, L, Ns]: flat indices of every path cell per source."""
        return [self._shifted(h, w, cells[..., 0], cells[..., 1]) for _, cells in self.groups]

    def all_pairs(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every pair inside an h x w grid: (src [M], dst [M], direction id [M]), flat indices."""
        ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        ys, xs = ys.ravel(), xs.ravel()
        ty = ys[None] + self.offsets[:, :1]
        tx = xs[None] + self.offsets[:, 1:]
        inside = (ty < h) & (tx >= 0) & (tx < w)
        direction, which = np.nonzero(inside)
        src = ys[which] * w + xs[which]
        dst = ty[direction, which] * w + tx[direction, which]
        return src.astype(np.int64), dst.astype(np.int64), direction.astype(np.int64)

    @cached_property
    def offsets_float(self) -> np.ndarray:
        """float32 [D, 2]: the target displacement (dy, dx) of each direction."""
        return self.offsets.astype(np.float32)
