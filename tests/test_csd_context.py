"""csd.pair_by=context (csdseg's extension): pairing by background colour, the pasted views of a
single-label target, the terms in one step, the option's checks and CSD's per-epoch counts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from csdseg.config import ConfigError, CsdConfig, load_config
from csdseg.csd.context_pairing import (ContextSampler, background_histogram, context_descriptors,
                                        context_region, histogram_intersection)
from csdseg.csd.counts import CsdCounts
from csdseg.csd.dataset import CSD_STREAM, CSDDataset, csd_collate
from csdseg.csd.pairing import build_sampler
from csdseg.csd.trainer import CSDStep, check_config
from csdseg.data.augment import ResizeLongCrop
from csdseg.data.cam_dataset import ClassificationDataset
from csdseg.data.source import Source
from csdseg.models import build_model

COW, SHEEP, BOAT, HORSE = range(4)
GREEN, BLUE, WHITE = (40, 150, 40), (20, 40, 220), (235, 235, 235)
# (class, background, object colour). The cow is painted blue and the boat green, so that a
# whole-image histogram would pair the cow with the boat: only the background tells them apart.
SCENES = [(COW, GREEN, BLUE), (SHEEP, GREEN, WHITE), (BOAT, BLUE, GREEN), (BOAT, BLUE, WHITE),
          (COW, GREEN, WHITE), (HORSE, GREEN, WHITE), (BOAT, BLUE, GREEN)]
S = 64


class SceneSource(Source):
    """Hand-made 64 x 64 photos: a flat background with a little noise, a square object; its
    masks (the MaskStore interface): confident object, a 2 px uncertain band, background 0."""

    def __init__(self, scenes: list[tuple[int, tuple, tuple]], num_classes: int = 4) -> None:
        self.class_names = [f"c{k}" for k in range(num_classes)]
        self.ids = [f"im{n}" for n in range(len(scenes))]
        self.labels = np.zeros((len(scenes), num_classes), np.float32)
        rng = np.random.default_rng(0)
        self.images, self.masks = {}, {}
        for n, (cls, bg, obj) in enumerate(scenes):
            self.labels[n, cls] = 1
            img = np.empty((S, S, 3), np.int16)
            img[:] = bg
            img[8:56, 4:36] = obj  # on the left: the right quarter holds whole feature cells
            noise = rng.integers(-8, 9, img.shape)
            self.images[self.ids[n]] = np.clip(img + noise, 0, 255).astype(np.uint8)
            mask = np.zeros((S, S), np.uint8)
            mask[6:58, 2:38] = 255
            mask[8:56, 4:36] = cls + 1
            self.masks[self.ids[n]] = mask

    def load_image(self, image_id: str) -> np.ndarray:
        return self.images[image_id]

    def load(self, image_id: str) -> np.ndarray:
        return self.masks[image_id]

    def path(self, image_id: str) -> str:
        return image_id


def _sampler(source: SceneSource, k: int = 1) -> ContextSampler:
    usable = np.ones(len(source), bool)
    return ContextSampler(source.labels, usable, context_descriptors(source, source), k)


def test_descriptor_reads_the_background_only():
    source = SceneSource(SCENES)
    d = context_descriptors(source, source)
    assert d.shape == (len(SCENES), 72) and np.allclose(d.sum(1), 1)
    cow, sheep, boat = d[0], d[1], d[2]
    assert histogram_intersection(cow, sheep[None])[0] > 0.9  # both on grass
    assert histogram_intersection(cow, boat[None])[0] < 0.1  # grass against water
    # the whole image would have paired the blue cow with the boat on blue water
    whole = [background_histogram(source.images[f"im{n}"], np.full((S, S), 0, np.uint8))
             for n in (0, 1, 2)]
    assert histogram_intersection(whole[0], whole[2][None]) > histogram_intersection(
        whole[0], whole[1][None])


def test_context_region_falls_back_when_the_background_is_too_small():
    label = np.full((S, S), 1, np.uint8)
    label[:2, :2] = 0  # 4 background pixels: under 1% of the image
    label[10:40, 10:40] = 255
    region = context_region(label)
    assert region.sum() == (label != 1).sum()  # not-M_fg: background and uncertain
    assert context_region(np.full((S, S), 2, np.uint8)).all()  # all object: the whole image
    label[:20] = 0
    assert np.array_equal(context_region(label), label == 0)  # enough: M_bg


def test_a_cow_on_grass_pairs_with_a_sheep_on_grass_never_a_boat_or_a_cow():
    source = SceneSource(SCENES)
    sampler = _sampler(source, k=1)
    cow = np.array([COW])
    ranked = sampler.ranked(0, cow, exclude_own=True)
    assert COW not in source.labels[ranked].argmax(1)  # never its own class (im4 is a cow)
    assert ranked[0] in (1, 5) and set(ranked[:2]) == {1, 5}  # the grass scenes first
    assert set(ranked[2:]) == {2, 3, 6}  # the boats on water last
    rng = np.random.default_rng(0)
    assert {sampler.pair(0, cow, rng, exclude_own=True)[1] for _ in range(50)} == {ranked[0]}
    # k = 2: drawn among the two grass scenes, both seen, a boat never
    two = _sampler(source, k=2)
    drawn = [two.pair(0, cow, rng, exclude_own=True) for _ in range(200)]
    assert {j for _, j in drawn} == {1, 5}
    assert all(c == source.labels[j].argmax() for c, j in drawn)
    # a boat on water pairs with the other boats' water only when its own class is allowed
    assert set(two.ranked(2, np.array([BOAT]))[:2]) == {3, 6}
    assert two.pair(2, np.array([BOAT]), rng, exclude_own=True)[0] != BOAT
    assert 2 not in two.ranked(2, np.array([BOAT]))  # never the image itself


def test_pairing_is_seeded_and_falls_back_to_none():
    source = SceneSource(SCENES)
    sampler = _sampler(source, k=3)
    draws = [[sampler.pair(i, source.labels[i].nonzero()[0], np.random.default_rng([7, i]), True)
              for i in range(len(SCENES))] for _ in range(2)]
    assert draws[0] == draws[1]
    # no image of another class: nothing to pair, the sample trains without CSD terms
    cows = SceneSource([(COW, GREEN, BLUE), (COW, GREEN, WHITE)])
    alone = _sampler(cows, k=5)
    assert alone.pair(0, np.array([COW]), np.random.default_rng(0), exclude_own=True) is None
    assert alone.eligible.tolist() == [True, False, False, False]
    # unusable images (an empty fg mask) are never drawn
    usable = np.ones(len(SCENES), bool)
    usable[[1, 5]] = False
    some = ContextSampler(source.labels, usable, context_descriptors(source, source), 1)
    assert some.pair(0, np.array([COW]), np.random.default_rng(0), True)[1] in (2, 3, 6)
    with pytest.raises(ValueError, match="context_k"):
        ContextSampler(source.labels, usable, context_descriptors(source, source), 0)


def _dataset(source: SceneSource, k: int = 1, apply_to: str = "all") -> CSDDataset:
    base = ClassificationDataset(source, ResizeLongCrop(S, (S, S), False), seed=3)
    return CSDDataset(base, source, _sampler(source, k), apply_to)


def test_single_label_target_gets_both_pasted_views():
    source = SceneSource(SCENES)
    data = _dataset(source)
    item = data[(0, 0)]
    v = item["csd"]
    assert v is not None and not item["skipped"]
    assert int(v["cls"]) == SHEEP and int(v["source_index"]) in (1, 5)
    assert v["label_fg"].tolist() == [1, 1, 0, 0]  # the cow and the pasted sheep
    x_m, x_s = item["img"].numpy(), v["x_s"].numpy()
    fg, b = v["m_fg"].numpy(), v["m_bg"].numpy()
    assert fg.sum() == 48 * 32  # the sheep's confident pixels (whole-image crop, no flip)
    # X_sm_fg: the sheep on the cow's photo; X_sm_bg: the cow on the sheep's grass, where the
    # cow's photo is confident background and the sheep is not
    assert np.array_equal(v["x_fg"].numpy()[:, fg], x_s[:, fg])
    assert np.array_equal(v["x_fg"].numpy()[:, ~fg], x_m[:, ~fg])
    assert np.array_equal(b, (source.masks["im0"] == 0) & ~fg) and b.any()
    assert np.array_equal(v["x_bg"].numpy()[:, b], x_s[:, b])
    assert np.array_equal(v["x_bg"].numpy()[:, ~b], x_m[:, ~b])
    # a pure function of (seed, epoch, index); the draw uses the CSD stream
    again = _dataset(source)[(0, 0)]["csd"]
    assert all(torch.equal(v[key], again[key]) for key in ("x_s", "x_fg", "x_bg", "cls"))
    rng = np.random.default_rng([3, 0, 0, CSD_STREAM])
    assert data.draw(0, rng) == (int(v["cls"]), int(v["source_index"]))
    # apply_to=multi: a single-label image gets no views, as in Algorithm 1
    assert _dataset(source, apply_to="multi")[(0, 0)]["csd"] is None
    cows = SceneSource([(COW, GREEN, BLUE), (COW, GREEN, WHITE)])
    lone = _dataset(cows)[(0, 0)]
    assert lone["csd"] is None and lone["skipped"]


def test_one_training_step_computes_both_terms():
    torch.manual_seed(0)
    source = SceneSource(SCENES)
    data = _dataset(source, k=2)
    batch = csd_collate([data[(0, i)] for i in range(4)])
    assert batch["x_s"].shape[0] == 4  # every single-label sample got its views
    model = build_model("resnet10t_cam", 4)
    model.train()
    step = CSDStep(CsdConfig(enabled=True, apply_to="all", pair_by="context"))
    loss, scalars = step(model, batch)
    assert scalars["csd_samples"] == 4
    for key in ("loss_fg", "loss_bg", "loss_cls"):
        assert np.isfinite(scalars[key]) and scalars[key] > 0, key
    expected = scalars["loss_cls"] + 0.01 * scalars["loss_fg"] + 0.1 * scalars["loss_bg"]
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    # the end-of-training line says how much CSD ran
    assert step.summary().startswith("csd: samples with views per epoch [4]; CSD touched 1 of 1")


def test_counts_log_each_epoch_and_resume():
    counts = CsdCounts()
    for epoch, samples, skipped in ((0, 3, 0), (0, 0, 2), (1, 1, 0)):
        counts.add(epoch, samples, skipped)
    t = counts.totals()
    assert t["samples_per_epoch"] == [3, 1] and (t["touched"], t["batches"]) == (2, 3)
    assert t["touched_share"] == pytest.approx(2 / 3) and t["skipped"] == 2
    assert counts.epoch_line(0).startswith("epoch 1: 3 samples with CSD views in 1 of 2 batches")
    again = CsdCounts()
    again.load_state_dict(counts.state_dict())
    assert again.totals() == t and again.skipped_in(0) == 2 and again.current == 1
    assert "(67%)" in counts.summary() and CsdCounts().summary().endswith("0 samples without "
                                                                           "an eligible image to paste")


def test_the_option_is_checked_and_chooses_the_sampler():
    assert CsdConfig().pair_by == "cooccurrence" and CsdConfig().context_k == 5
    cfg = load_config(None, ["csd.pair_by=context", "csd.apply_to=all", "csd.context_k=3"])
    assert (cfg.csd.pair_by, cfg.csd.context_k) == ("context", 3)
    with pytest.raises(ConfigError, match="pair_by"):
        load_config(None, ["csd.pair_by=colour"])
    with pytest.raises(ConfigError, match="context_k"):
        check_config(CsdConfig(pair_by="context", context_k=0))
    check_config(CsdConfig(pair_by="context", apply_to="all", variant="authors"))  # free option
    source = SceneSource(SCENES)
    sampler = build_sampler(cfg.csd, source, source)
    assert isinstance(sampler, ContextSampler) and sampler.k == 3
    assert hasattr(build_sampler(CsdConfig(), source, source), "P")  # co-occurrence
