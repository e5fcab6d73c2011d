"""Co-occurrence resampling: which single-label image to paste into a multi-label one.

C [K, K] starts at ones; a multi-label image adds 1 to C[a, b] for every ordered pair of its
distinct classes, a single-label image of class a adds 1 to C[a, a]. P = row-softmax(tau * C).
For a sample with class set S the pasted class c is drawn with probability proportional to
sum_{a in S} P[a, :], restricted to the classes that have a usable single-label image; the
single-label image is then uniform among those of class c.
"""
from __future__ import annotations

import numpy as np


def cooccurrence_counts(labels: np.ndarray) -> np.ndarray:
    """labels: multi-hot [N, K] -> C float64 [K, K] (ones + counts, see module doc)."""
    labels = np.asarray(labels) > 0
    K = labels.shape[1]
    counts = np.ones((K, K), np.float64)
    multi = labels[labels.sum(1) > 1].astype(np.float64)
    pairs = multi.T @ multi  # [a, b] = images holding both a and b (diagonal: holding a)
    np.fill_diagonal(pairs, 0.0)  # multi-label images add nothing to C[a, a]
    counts += pairs
    single = labels[labels.sum(1) == 1]
    counts[np.diag_indices(K)] += single.sum(0)
    return counts


def transition(counts: np.ndarray, tau: float) -> np.ndarray:
    """P [K, K] = softmax over each row of tau * C."""
    z = tau * np.asarray(counts, np.float64)
    z = z - z.max(axis=1, keepdims=True)  # stable: C holds counts in the thousands on VOC
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class CooccurrenceSampler:
    """Draws (class c, single-label image index) for a sample's class set.

    ``labels`` [N, K] multi-hot of the training split; ``usable`` bool [N] marks single-label
    images whose fg mask is non-empty (others are never pasted). Classes without a usable
    single-label image are excluded from every draw.
    """

    def __init__(self, labels: np.ndarray, usable: np.ndarray, tau: float = 0.1) -> None:
        self.labels = np.asarray(labels) > 0
        self.P = transition(cooccurrence_counts(self.labels), tau)
        n_cls = self.labels.sum(1)
        usable = np.asarray(usable, bool) & (n_cls == 1)
        self.pool: list[np.ndarray] = [
            np.flatnonzero(usable & self.labels[:, k]) for k in range(self.labels.shape[1])]
        self.eligible = np.array([len(p) > 0 for p in self.pool])

    @property
    def num_classes(self) -> int:
        return self.labels.shape[1]

    def class_probs(self, classes: np.ndarray, exclude_own: bool = False) -> np.ndarray | None:
        """q [K]: the draw distribution for class set ``classes`` (int indices); None when no
        class remains. ``exclude_own`` also removes the sample's own classes (apply_to=all on
        a single-label sample: the pasted object must be of another class)."""
        classes = np.asarray(classes, np.int64).reshape(-1)
        q = self.P[classes].sum(0) * self.eligible
        if exclude_own:
            q[classes] = 0.0
        total = q.sum()
        return q / total if total > 0 else None

    def draw(self, classes: np.ndarray, rng: np.random.Generator,
             exclude_own: bool = False) -> tuple[int, int] | None:
        """(pasted class c, index of the single-label image) or None when nothing is eligible."""
        q = self.class_probs(classes, exclude_own)
        if q is None:
            return None
        c = int(rng.choice(len(q), p=q))
        pool = self.pool[c]
        return c, int(pool[rng.integers(len(pool))])

    def pair(self, index: int, classes: np.ndarray, rng: np.random.Generator,
             exclude_own: bool = False) -> tuple[int, int] | None:
        """The dataset's interface, shared with ContextSampler (which needs the sample's index
        to find its context): the co-occurrence draw ignores ``index``."""
        return self.draw(classes, rng, exclude_own)
