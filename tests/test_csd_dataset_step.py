"""CSD's dataset (the pasted views, bit for bit) and one training step over every model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from csdseg.config import CsdConfig
from csdseg.csd.cooccurrence import CooccurrenceSampler
from csdseg.csd.dataset import CSD_STREAM, CSDDataset, csd_collate
from csdseg.csd.trainer import CSDStep
from csdseg.data.augment import RandomResizedCrop, ResizeLongCrop
from csdseg.data.cam_dataset import ClassificationDataset
from csdseg.data.source import Source
from csdseg.data.transforms import (normalize, random_crop, random_hflip, random_resize_long,
                                    sample_rng)
from csdseg.models import build_model

LABELS = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0],
                   [0, 0, 1, 0], [0, 1, 1, 1], [1, 1, 0, 0]], np.float32)


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
