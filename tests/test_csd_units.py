"""CSD's parts: co-occurrence sampler, paste, per-cell KL, dataset, and one training step."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from csdseg.config import CsdConfig
from csdseg.csd.consistency import (cell_log_probs, cell_mask, dead_share, masked_kl,
                                    normalize_maps)
from csdseg.csd.cooccurrence import CooccurrenceSampler, cooccurrence_counts, transition
from csdseg.csd.dataset import CSD_STREAM, CSDDataset, csd_collate
from csdseg.csd.paste import bg_paste_mask, paste, paste_bg, paste_fg
from csdseg.csd.trainer import CSDStep
from csdseg.data.augment import RandomResizedCrop, ResizeLongCrop
from csdseg.data.cam_dataset import ClassificationDataset
from csdseg.data.source import Source
from csdseg.data.transforms import (normalize, random_crop, random_hflip, random_resize_long,
                                    sample_rng)
from csdseg.models import build_model

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


class ArraySource(Source):
    """In-memory 64x64 images with a large square object per class, as a Source."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels, self.class_names = labels, [f"c{k}" for k in range(labels.shape[1])]
        self.ids = [f"im{i}" for i in range(len(labels))]
        rng = np.random.default_rng(0)
        self.images = {i: rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in self.ids}

    def load_image(self, image_id: str) -> np.ndarray:
        return self.images[image_id]


class ArrayMasks:
    def __init__(self, source: ArraySource) -> None:
        self.masks = {}
        for n, i in enumerate(source.ids):
            m = np.zeros((64, 64), np.uint8)
            for k in np.flatnonzero(source.labels[n]):
                m[2 + k:62, 2:38 - k] = 255  # an uncertain band around the object
            for k in np.flatnonzero(source.labels[n]):
                m[4 + k:60, 4:36 - k] = k + 1
            self.masks[i] = m

    def load(self, image_id: str) -> np.ndarray:
        return self.masks[image_id]

    def path(self, image_id: str) -> str:
        return image_id


def _dataset(apply_to: str = "multi", crop: int = 32, hflip: bool = True,
             recipe: str = "irn") -> CSDDataset:
    source = ArraySource(LABELS)
    augment = (ResizeLongCrop(crop, (64, 64), hflip) if recipe == "irn"
               else RandomResizedCrop(crop, hflip))
    base = ClassificationDataset(source, augment, seed=3)
    sampler = CooccurrenceSampler(LABELS, np.ones(len(LABELS), bool), 0.1)
    return CSDDataset(base, ArrayMasks(source), sampler, apply_to)


@pytest.mark.parametrize("recipe", ["irn", "mct"])
def test_xm_is_the_baseline_sample_and_xs_takes_the_same_recipe(recipe):
    """The control and the CSD run see the same X_m: for either recipe, CSD's X_m is bit for
    bit the baseline dataset's sample for the same (seed, epoch, index), and X_s is the source
    image through the same recipe (not IRN's crop when the baseline uses DeiT's)."""
    data = _dataset(recipe=recipe)
    for epoch, index in ((2, 0), (0, 6), (5, 7)):
        item = data[(epoch, index)]
        baseline = data.base[(epoch, index)]
        assert torch.equal(item["img"], baseline["img"]) and item["img"].dtype == torch.float32
        rng = np.random.default_rng([3, epoch, index, CSD_STREAM])
        c, j = data.draw(index, rng)
        assert int(item["csd"]["source_index"]) == j and int(item["csd"]["cls"]) == c
        img_s = data.source.load_image(f"im{j}")
        expected_s, (lab_s,) = data.base.augment(img_s, rng, (data.masks.load(f"im{j}"),))
        assert torch.equal(item["csd"]["x_s"], torch.from_numpy(expected_s))
        assert torch.equal(item["csd"]["m_fg"], torch.from_numpy((lab_s > 0) & (lab_s < 255)))
    other = _dataset(recipe="mct" if recipe == "irn" else "irn")
    assert not torch.equal(other[(2, 0)]["img"], data[(2, 0)]["img"])  # the recipe matters


def test_dataset_reproducible_and_pastes():
    data = _dataset()
    a, b = data[(2, 0)], data[(2, 0)]
    for k in ("x_s", "x_fg", "x_bg", "m_fg", "m_bg", "cls"):
        assert torch.equal(a["csd"][k], b["csd"][k])
    assert not torch.equal(a["csd"]["x_s"], data[(3, 0)]["csd"]["x_s"])
    img = data.source.load_image("im0")
    expected, _ = data.base.augment(img, sample_rng(3, 2, 0))
    assert np.array_equal(a["img"].numpy(), expected)
    # fg pixels of X_sm_fg are X_s's, the rest X_m's; B is off M_fg
    v = a["csd"]
    fg = v["m_fg"].numpy()
    assert fg.any() and np.array_equal(v["x_fg"].numpy()[:, fg], v["x_s"].numpy()[:, fg])
    assert np.array_equal(v["x_fg"].numpy()[:, ~fg], a["img"].numpy()[:, ~fg])
    assert not (v["m_bg"].numpy() & fg).any()
    assert data[(0, 2)]["csd"] is None and not data[(0, 2)]["skipped"]  # single-label, multi
    assert data[(0, 6)]["csd"]["label_fg"][int(data[(0, 6)]["csd"]["cls"])] == 1
    single = _dataset("all")[(0, 2)]["csd"]
    assert single is not None and int(single["cls"]) != 0  # another class than its own


class WideSource(ArraySource):
    """60 x 90 images with noisy colours, so the resize, the crop and the padding all matter."""

    def __init__(self, labels: np.ndarray) -> None:
        super().__init__(labels)
        rng = np.random.default_rng(1)
        self.images = {i: rng.integers(0, 256, (60, 90, 3), dtype=np.uint8) for i in self.ids}
        self.masks = {}
        for n, i in enumerate(self.ids):
            m = rng.choice(np.array([0, 255], np.uint8), (60, 90), p=[0.8, 0.2])
            for k in np.flatnonzero(labels[n]):
                m[5 + 6 * k:50, 10 + 9 * k:70] = k + 1
            self.masks[i] = m

    def load(self, image_id: str) -> np.ndarray:  # the MaskStore interface
        return self.masks[image_id]

    def path(self, image_id: str) -> str:
        return image_id


def plain_csd_sample(data: CSDDataset, epoch: int, index: int) -> tuple[np.ndarray, dict | None]:
    """CSD's sample built the plain way, per the paper's formulas: IRN's recipe on the whole
    image (resize, flip, normalise everything, then crop with 0 / 255 padding), the masks by
    their definitions, X_sm = M * X_s + (1 - M) * X_m."""
    aug = data.base.augment

    def augment(img, mask, rng):
        img, (mask,) = random_resize_long(img, *aug.resize_long, rng, (mask,))
        if aug.hflip:
            img, (mask,) = random_hflip(img, rng, (mask,))
        x, lab = random_crop([normalize(img), mask], aug.crop_size, [0.0, 255], rng)
        return x, lab

    def load(i):
        image_id = data.source.ids[i]
        return data.source.load_image(image_id), data.masks.load(image_id)

    seed = data.base.seed
    x_m, lab_m = augment(*load(index), sample_rng(seed, epoch, index))
    rng = np.random.default_rng([seed, epoch, index, CSD_STREAM])
    drawn = data.draw(index, rng)
    if not drawn:
        return x_m, None
    c, j = drawn
    x_s, lab_s = augment(*load(j), rng)
    m_fg = ((lab_s >= 1) & (lab_s <= 254)).astype(np.float32)  # a class: neither bg nor 255
    b = (1 - m_fg) * (lab_m == 0)
    return x_m, {"x_s": x_s, "x_fg": m_fg * x_s + (1 - m_fg) * x_m,
                 "x_bg": b * x_s + (1 - b) * x_m, "m_fg": m_fg.astype(bool),
                 "m_bg": b.astype(bool), "cls": c, "source_index": j}


@pytest.mark.parametrize("apply_to", ["multi", "all"])
def test_samples_equal_the_plain_construction_bit_for_bit(apply_to):
    """The fast construction (normalising only the crop through a table, pasting by select,
    B computed once) gives exactly the samples of the plain one, for fixed seeds; long sides
    from 40 to 120 px around a crop of 64 exercise both the crop and the padding."""
    source = WideSource(LABELS)
    base = ClassificationDataset(source, ResizeLongCrop(64, (40, 120), True), seed=5)
    sampler = CooccurrenceSampler(LABELS, np.ones(len(LABELS), bool), 0.1)
    data = CSDDataset(base, source, sampler, apply_to)
    with_views = 0
    for epoch in range(3):
        for index in range(len(LABELS)):
            item = data[(epoch, index)]
            x_m, views = plain_csd_sample(data, epoch, index)
            assert np.array_equal(item["img"].numpy(), x_m)
            assert (item["csd"] is None) == (views is None)
            if views is None:
                continue
            with_views += 1
            for k, expected in views.items():
                got = item["csd"][k].numpy()
                if k in ("cls", "source_index"):
                    assert int(got) == expected, k
                else:
                    assert got.dtype == expected.dtype and np.array_equal(got, expected), k
    assert with_views >= 12


@pytest.mark.parametrize("model_name,teacher", [("resnet10t_cam", "detached"),
                                                ("resnet10t_cam", "ema"),
                                                ("mctformer_v2_tiny", "joint")])
def test_step_logs_all_terms_for_any_model(model_name, teacher):
    torch.manual_seed(0)
    data = _dataset(crop=64, hflip=False)  # whole images: the pasted objects cover cells
    batch = csd_collate([data[(0, i)] for i in (0, 1, 2, 6)])
    assert batch["x_s"].shape[0] == 3 and batch["rows"].tolist() == [0, 1, 3]
    model = build_model(model_name, 4)
    model.train()
    cfg = CsdConfig(enabled=True, teacher=teacher)
    step = CSDStep(cfg)
    loss, scalars = step(model, batch)
    for k in ("loss_cls", "loss_fg", "loss_bg", "csd_samples", "dead_cam_share"):
        assert k in scalars and np.isfinite(scalars[k])
    assert scalars["csd_samples"] == 3 and scalars["loss_fg"] > 0 and scalars["loss_bg"] > 0
    assert model.training
    expected = scalars["loss_cls"] + 0.01 * scalars["loss_fg"] + 0.1 * scalars["loss_bg"]
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    # no sample with views: the plain classification loss
    plain = csd_collate([data[(0, 2)], data[(0, 3)]])
    loss2, s2 = step(model, plain)
    assert s2["csd_samples"] == 0 and float(loss2) == pytest.approx(s2["loss_cls"])


def test_terms_vanish_for_identical_maps_and_respect_options():
    torch.manual_seed(0)
    M, K = 2, 4
    t = torch.randn(M, K, 2, 2)
    batch = {"cls": torch.tensor([1, 2]), "m_fg": torch.ones(M, 32, 32, dtype=torch.bool),
             "m_bg": torch.ones(M, 32, 32, dtype=torch.bool)}
    labels_m = torch.tensor([[1, 0, 0, 1], [1, 1, 0, 0]])
    for options in ({}, {"kl_classes": "present"}, {"kl_channels": "pasted"},
                    {"normalizer": "max"}, {"normalizer": "detached_floor"}):
        step = CSDStep(CsdConfig(**options))
        fg, bg = step.terms(t, t, t, batch, labels_m)
        assert float(fg) == pytest.approx(0, abs=1e-6) and float(bg) == pytest.approx(0, abs=1e-6)
        fg, bg = step.terms(torch.randn(M, K, 2, 2), torch.randn(M, K, 2, 2), t, batch, labels_m)
        assert float(fg) > 0 and float(bg) > 0, options
    # teacher_classes=pasted: only class c of the teacher counts in the fg term
    step = CSDStep(CsdConfig(teacher_classes="pasted", normalizer="max"))  # per-class scale
    t2 = t.clone()
    t2[0, 0] += 5.0  # another class than c = 1 in the teacher: no effect
    assert torch.allclose(step.terms(t, t, t, batch, labels_m)[0],
                          step.terms(t, t, t2, batch, labels_m)[0])
    # uncovered cells contribute nothing
    none = dict(batch, m_fg=torch.zeros(M, 32, 32, dtype=torch.bool))
    assert float(CSDStep(CsdConfig()).terms(torch.randn(M, K, 2, 2), t, t, none, labels_m)[0]) == 0
