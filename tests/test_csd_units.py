"""CSD's parts: co-occurrence sampler, paste, per-cell KL and the map normalizers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from csdseg.csd.consistency import (cell_log_probs, cell_mask, dead_share, masked_kl,
                                    normalize_maps)
from csdseg.csd.cooccurrence import CooccurrenceSampler, cooccurrence_counts, transition
from csdseg.csd.paste import bg_paste_mask, paste, paste_bg, paste_fg

LABELS = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0],
                   [0, 0, 1, 0], [0, 1, 1, 1], [1, 1, 0, 0]], np.float32)


def test_counts_match_brute_force():
    C = np.ones((4, 4))
    for row in LABELS:
        cls = np.flatnonzero(row)
        if len(cls) == 1:
            C[cls[0], cls[0]] += 1
        for a in cls:
            for b in cls:
                if a != b:
                    C[a, b] += 1
    np.testing.assert_array_equal(cooccurrence_counts(LABELS), C)
    P = transition(C, 0.1)
    np.testing.assert_allclose(P, np.exp(0.1 * C) / np.exp(0.1 * C).sum(1, keepdims=True))


def test_draws_follow_p_and_skip_excluded_classes():
    usable = np.ones(len(LABELS), bool)
    sampler = CooccurrenceSampler(LABELS, usable, tau=1.0)
    assert sampler.eligible.tolist() == [True, True, True, False]  # class 3: no single image
    S = np.array([0, 1])
    expected = sampler.P[S].sum(0) * [1, 1, 1, 0]
    expected /= expected.sum()
    rng, n = np.random.default_rng(0), 20000
    draws = [sampler.draw(S, rng) for _ in range(n)]
    counts = np.bincount([c for c, _ in draws], minlength=4)
    sigma = np.sqrt(n * expected * (1 - expected))
    assert np.all(np.abs(counts - n * expected) <= 4 * sigma + 1e-9), (counts, n * expected)
    assert counts[3] == 0
    for c, j in draws[:200]:  # the image is a single-label image of the drawn class
        assert LABELS[j].sum() == 1 and LABELS[j, c] == 1
    # own classes excluded (apply_to=all on a single-label sample), none left -> None
    assert sampler.class_probs(np.array([0]), exclude_own=True)[0] == 0
    none = CooccurrenceSampler(LABELS, np.zeros(len(LABELS), bool))
    assert none.draw(S, rng) is None and not none.eligible.any()
    # a class whose only single-label image has an empty mask is excluded too
    only = CooccurrenceSampler(LABELS, np.arange(len(LABELS)) != 2)
    assert not only.eligible[0] and only.class_probs(S)[0] == 0


def test_paste_invariants():
    rng = np.random.default_rng(1)
    x_s, x_m = rng.normal(size=(2, 3, 16, 16)).astype(np.float32)
    fg_s, bg_m = rng.random((16, 16)) < 0.4, rng.random((16, 16)) < 0.5
    fg = paste_fg(x_s, x_m, fg_s)
    assert np.array_equal(fg[:, fg_s], x_s[:, fg_s]) and np.array_equal(fg[:, ~fg_s], x_m[:, ~fg_s])
    B = bg_paste_mask(fg_s, bg_m)
    assert not (B & fg_s).any() and not (B & ~bg_m).any() and B.sum() == (~fg_s & bg_m).sum()
    bg = paste_bg(x_s, x_m, fg_s, bg_m)
    assert np.array_equal(bg[:, B], x_s[:, B]) and np.array_equal(bg[:, ~B], x_m[:, ~B])


@pytest.mark.parametrize("shape", [(3, 512, 512), (3, 17, 33), (1, 1, 1)])
def test_paste_is_a_select(shape):
    """paste (OpenCV's masked copy) equals np.where(M, X_s, X_m) exactly, views and all, and
    leaves its inputs alone."""
    rng = np.random.default_rng(2)
    x_s, x_m = rng.normal(size=(2, *shape)).astype(np.float32)
    mask = rng.random(shape[1:]) < 0.4
    keep_s, keep_m = x_s.copy(), x_m.copy()
    for a, b, m in ((x_s, x_m, mask), (x_s[:, ::-1], x_m[:, :, ::-1], mask[::-1])):
        out = paste(a, b, m)
        assert out.dtype == np.float32 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, np.where(m[None], a, b))
    assert np.array_equal(x_s, keep_s) and np.array_equal(x_m, keep_m)
    assert np.array_equal(paste(x_s, x_m, np.zeros(shape[1:], bool)), x_m)


def test_cell_mask_is_a_min_pool():
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, :4, :4] = True  # exactly cell (0, 0) of a 2x2 grid
    mask[0, 4:, 4:7] = True  # cell (1, 1) only partly
    assert cell_mask(mask, (2, 2)).tolist() == [[[True, False], [False, False]]]
    odd = torch.ones(1, 9, 9, dtype=torch.bool)  # sizes that do not divide: all covered
    assert cell_mask(odd, (2, 2)).all()


def test_kl_zero_when_equal_and_gradient_lowers_it():
    torch.manual_seed(0)
    maps = torch.randn(2, 3, 4, 4)
    cells = torch.ones(2, 4, 4, dtype=torch.bool)
    lp = cell_log_probs(normalize_maps(maps, "global"), 0.15, 0.1)
    assert float(masked_kl(lp, lp, cells)) == pytest.approx(0.0, abs=1e-6)
    student = torch.randn(2, 3, 4, 4, requires_grad=True)
    for mode in ("max", "detached_floor", "global"):
        s = student.detach().clone().requires_grad_(True)
        kl0 = masked_kl(lp, cell_log_probs(normalize_maps(s, mode), 0.15, 0.1), cells)
        kl0.backward()
        with torch.no_grad():
            s2 = s - 1e-3 * s.grad
        kl1 = masked_kl(lp, cell_log_probs(normalize_maps(s2, mode), 0.15, 0.1), cells)
        assert float(kl1) < float(kl0.detach()), mode
    # no covered cell: 0, and still in the graph (backward works)
    empty = masked_kl(lp, cell_log_probs(normalize_maps(student, "max"), 0.15, 0.1),
                      torch.zeros(2, 4, 4, dtype=torch.bool))
    empty.backward()
    assert float(empty) == 0.0 and torch.all(student.grad == 0)


def test_kl_without_cells_is_zero_when_channels_are_left_out():
    """kl_channels=pasted gives the left-out channels log p = -inf; a batch whose masks cover no
    cell must still give 0, not -inf * 0 = nan (it stopped round 4's runs with "loss nan")."""
    torch.manual_seed(0)
    keep = torch.zeros(2, 4, dtype=torch.bool)
    keep[:, [1, 3]] = True  # one class and the background
    student = torch.randn(2, 3, 4, 4, requires_grad=True)
    lp_t = cell_log_probs(normalize_maps(torch.randn(2, 3, 4, 4), "global"), 0.15, 0.1, keep)
    lp_s = cell_log_probs(normalize_maps(student, "global"), 0.15, 0.1, keep)
    assert torch.isinf(lp_s).any()
    empty = masked_kl(lp_t, lp_s, torch.zeros(2, 4, 4, dtype=torch.bool))
    empty.backward()
    assert float(empty) == 0.0 and torch.all(student.grad == 0)
    some = masked_kl(lp_t, lp_s, torch.ones(2, 4, 4, dtype=torch.bool))  # and with cells
    assert torch.isfinite(some) and float(some) > 0


def test_normalizers():
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, 0, 0, 0], maps[0, 1, 1, 1] = 4.0, 0.01
    assert normalize_maps(maps, "max")[0, 1].max() == pytest.approx(1.0, rel=1e-2)  # stretched
    assert normalize_maps(maps, "global")[0, 1].max() == pytest.approx(0.0025, rel=1e-3)
    assert normalize_maps(maps, "detached_floor", 1.0)[0, 1].max() == pytest.approx(0.01)
    assert normalize_maps(maps, "detached_floor", 1.0)[0, 0].max() == pytest.approx(1.0)
    # a weak class's gradient below its peak: 1/max under "max", 1/floor when detached
    maps[0, 1, 0, 0] = 0.005
    for mode, expected in (("max", 1 / 0.01001), ("detached_floor", 1.0), ("global", 0.25)):
        m = maps.clone().requires_grad_(True)
        normalize_maps(m, mode)[0, 1, 0, 0].backward()
        assert float(m.grad[0, 1, 0, 0]) == pytest.approx(expected, rel=1e-3), mode
    with pytest.raises(ValueError, match="normalizer must be one of"):
        normalize_maps(maps, "median")
    dead, present = dead_share(torch.stack([maps[0], -maps[0]]), torch.tensor([[1, 1], [1, 0]]))
    assert (dead, present) == (1, 3)

