"""IRN's random walk: spread CAMs along affinities, then threshold into a pseudo-mask.

The official code (``misc/indexing.py: propagate_to_edge``) builds the dense n x n transition
matrix T = A D^-1 (A = affinity ** beta with ones on the diagonal, n = h * w pixels at stride
4), squares it ``exp_times`` times and multiplies the CAMs by T^(2^exp_times). For a 500x375
image n = 11,750, so each squaring is ~3 TFLOP on a 550 MB matrix.

Here the same result comes from 2^exp_times sparse products of T with the CAM vectors: A has
~70 non-zeros per row (radius 5), so one product is ~1 MFLOP per channel and the 256 products
cost less than one dense squaring. Because A is symmetric, ``x^T (A D^-1)^N`` equals
``((D^-1 A)^N x)^T``: row-normalised steps on column vectors give the official result.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from csdseg.ops.affinity import walk_affinity
from csdseg.ops.path_index import PathIndex

# Products of many sub-unit weights underflow into float32 denormals, which are ~100x slower on
# x86 CPUs. Weights below this are dropped: each row already holds a diagonal weight of 1.
TINY = 1e-30
_DEPTH = 0  # nesting depth of cpu_walk_mode


def flush_denormal_enabled() -> bool:
    """Whether the CPU flushes float32 denormals to zero now (torch has no getter for the
    setting of ``torch.set_flush_denormal``): halve the smallest normal and see."""
    tiny = torch.tensor([torch.finfo(torch.float32).tiny])
    return bool((tiny / 2).item() == 0.0)


@contextlib.contextmanager
def cpu_walk_mode(device: torch.device, threads: int = 1) -> Iterator[None]:
    """On the CPU: flush denormals to zero and use ``threads`` threads (0 = leave as is);
    both settings are restored on exit.

    One sparse product is ~2 ms of work; with several OpenMP threads on a busy machine the
    thread hand-offs cost ~20x that, so a single thread per walk (and one process per core
    over images) is the fast setting. A no-op on other devices.
    """
    global _DEPTH
    if device.type != "cpu" or _DEPTH:  # elsewhere, or already inside (nested calls)
        yield
        return
    before, flushing = torch.get_num_threads(), flush_denormal_enabled()
    torch.set_flush_denormal(True)
    if threads:
        torch.set_num_threads(threads)
    _DEPTH += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            yield
    finally:
        _DEPTH -= 1
        torch.set_flush_denormal(flushing)  # the caller's setting, not always off
        torch.set_num_threads(before)


def transition_matrix(src: torch.Tensor, dst: torch.Tensor, aff: torch.Tensor, n: int
                      ) -> torch.Tensor:
    """Row-normalised D^-1 A as a sparse CSR [n, n] (float32) on ``aff``'s device.

    src, dst: int64 [M] one direction of each pair; aff: [M] weights (already ** beta).
    A holds each pair in both directions plus ones on the diagonal, as IRN's dense matrix.
    """
    device = aff.device
    keep = aff > TINY
    src, dst, aff = src[keep], dst[keep], aff[keep].float()
    diag = torch.arange(n, device=device)
    rows = torch.cat([src, dst, diag])
    cols = torch.cat([dst, src, diag])
    vals = torch.cat([aff, aff, torch.ones(n, device=device)])
    degree = torch.zeros(n, device=device).index_add_(0, rows, vals)
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals / degree[rows], (n, n),
                                  check_invariants=False)
    coo = coo.coalesce()
    rows, cols = coo.indices()
    crow = torch.zeros(n + 1, dtype=torch.int64, device=device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        # int32 indices: a third less memory traffic per product than int64
        return torch.sparse_csr_tensor(crow.int(), cols.int(), coo.values(), (n, n),
                                       check_invariants=False)


def propagate(trans: torch.Tensor, x: torch.Tensor, steps: int, threads: int = 1
              ) -> torch.Tensor:
    """``trans^steps @ x`` by repeated sparse products. trans: sparse [n, n]; x: [n, C]."""
    with cpu_walk_mode(x.device, threads):
        for _ in range(steps):
            x = trans @ x
    return x


def random_walk(cams: torch.Tensor, boundary: torch.Tensor, beta: float = 10.0,
                exp_times: int = 8, radius: int = 5, threads: int = 1) -> torch.Tensor:
    """IRN's propagate_to_edge. cams: [C, h, w] >= 0; boundary: [h, w] in [0, 1].

    Returns [C, h, w]: the CAMs damped by (1 - boundary), walked 2^exp_times steps (on the
    CPU with ``threads`` threads, 0 = torch's current setting).
    """
    c, h, w = cams.shape
    if boundary.shape != (h, w):
        raise ValueError(f"boundary is {tuple(boundary.shape)} but the CAMs are {(h, w)}")
    with cpu_walk_mode(cams.device, threads):
        src, dst, aff = walk_affinity(boundary.float(), PathIndex(radius), beta)
        trans = transition_matrix(src, dst, aff, h * w)
        x = (cams.float() * (1.0 - boundary.float())).reshape(c, h * w).T.contiguous()
        return propagate(trans, x, 2 ** exp_times, threads).T.reshape(c, h, w)


def dense_random_walk(cams: torch.Tensor, boundary: torch.Tensor, beta: float = 10.0,
                      exp_times: int = 8, radius: int = 5) -> torch.Tensor:
    """The official algorithm (dense A, column-normalised, squared ``exp_times`` times).

    A reference for tests and the benchmark: memory n^2, time exp_times * n^3.
    """
    c, h, w = cams.shape
    n = h * w
    src, dst, aff = walk_affinity(boundary, PathIndex(radius), beta)  # keeps float64 inputs
    dense = torch.eye(n, dtype=aff.dtype, device=aff.device)
    dense[src, dst] = aff
    dense[dst, src] = aff
    trans = dense / dense.sum(dim=0, keepdim=True)
    for _ in range(exp_times):
        trans = trans @ trans
    x = (cams * (1.0 - boundary)).reshape(c, n).to(trans.dtype)
    return (x @ trans).reshape(c, h, w)


def walk_to_labels(rw: torch.Tensor, keys: np.ndarray, size: tuple[int, int],
                   bg_threshold: float = 0.25) -> np.ndarray:
    """Walked CAMs [C, h, w] at stride 4 -> uint8 label map [H, W] (0 = background).

    As IRN: bilinear x4, crop to the image, divide by the global maximum, then the background
    is a constant ``bg_threshold`` channel and each pixel takes the argmax; ``keys`` (int [C],
    class indices 0..K-1 of the channels) map channel c to label keys[c] + 1.
    """
    up = F.interpolate(rw[None].float(), scale_factor=4, mode="bilinear", align_corners=False)
    up = up[0, :, :size[0], :size[1]]
    up = up / up.max().clamp_min(1e-12)
    scores = F.pad(up, (0, 0, 0, 0, 1, 0), value=bg_threshold)
    pred = scores.argmax(dim=0).cpu().numpy()
    lut = np.concatenate([[0], np.asarray(keys, dtype=np.int64) + 1])
    return lut[pred].astype(np.uint8)
