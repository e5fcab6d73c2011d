"""csd.variant=authors and its options, on small hand-made maps with hand-computed answers.

Maps are [M, K, 2, 2] feature cells over 32x32 pixel masks: cell (i, j) is the 16x16 block
[16i:16i+16, 16j:16j+16], so a mask covers a cell fully, partly or not at all by construction.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from csdseg.config import Config, ConfigError, CsdConfig, load_config
from csdseg.csd.consistency import normalize_maps, teacher_confidence
from csdseg.csd.trainer import CSDStep, check_config, mask_dir
from csdseg.csd.variants import resolve_variant

EPS = 1e-4  # the authors' min-max epsilon


def softmax(v: list[float]) -> list[float]:
    e = [math.exp(x) for x in v]
    return [x / sum(e) for x in e]


def term(p_t: list[float], p_s: list[float], k: int) -> float:
    """One channel's KL term p_t[k] (log p_t[k] - log p_s[k])."""
    return p_t[k] * (math.log(p_t[k]) - math.log(p_s[k]))


def cells_mask(m: int, covered: dict[int, list[tuple[int, int]]],
               half: dict[int, list[tuple[int, int]]] | None = None) -> torch.Tensor:
    """bool [m, 32, 32]: the listed cells of each image fully covered, ``half`` half covered."""
    mask = torch.zeros(m, 32, 32, dtype=torch.bool)
    for n, cells in covered.items():
        for i, j in cells:
            mask[n, 16 * i:16 * i + 16, 16 * j:16 * j + 16] = True
    for n, cells in (half or {}).items():
        for i, j in cells:
            mask[n, 16 * i:16 * i + 8, 16 * j:16 * j + 16] = True
    return mask


def test_class_minmax_is_per_cell_over_classes_and_none_is_raw():
    maps = torch.tensor([[[[1.0, -2.0]], [[3.0, 0.0]], [[5.0, 4.0]]]])  # [1, 3, 1, 2]
    a = normalize_maps(maps, "class_minmax")
    assert a[0, :, 0, 0].tolist() == pytest.approx([0.0, 2 / (4 + EPS), 4 / (4 + EPS)], rel=1e-6)
    assert a[0, :, 0, 1].tolist() == pytest.approx([0.0, 2 / (6 + EPS), 6 / (6 + EPS)], rel=1e-6)
    # a positive scale and a per-cell shift change nothing (up to the epsilon)
    b = normalize_maps(3 * maps + torch.tensor([7.0, -1.0]).view(1, 1, 1, 2), "class_minmax")
    assert torch.allclose(a, b, atol=1e-4)
    assert torch.equal(normalize_maps(maps, "none"), maps)  # no ReLU: -2 stays
    conf = teacher_confidence(torch.tensor([[[[0.0, 1.0], [2.0, 4.0]], [[9.0, 9.0], [9.0, 9.0]]]]),
                              torch.tensor([0]))
    assert conf[0].flatten().tolist() == pytest.approx([0, 1 / (4 + EPS), 2 / (4 + EPS),
                                                        4 / (4 + EPS)], rel=1e-6)


def _fg_case():
    """M = 1, K = 3, pasted class c = 1. Teacher class-1 map [[2, 0.5], [1, 0]]: its min-max
    is above 0.5 only at (0, 0). M_fg covers (0, 0) and (0, 1), half of (1, 0)."""
    t = torch.zeros(1, 3, 2, 2)
    t[0, :, 0, 0] = torch.tensor([0.0, 2.0, 1.0])
    t[0, :, 0, 1] = torch.tensor([1.0, 0.5, 3.0])
    t[0, :, 1, 0] = torch.tensor([0.0, 1.0, 0.0])
    s = torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    s[0, :, 0, 0] = torch.tensor([1.0, 1.0, 3.0])
    batch = {"cls": torch.tensor([1]), "m_fg": cells_mask(1, {0: [(0, 0), (0, 1)]}, {0: [(1, 0)]}),
             "m_bg": cells_mask(1, {0: [(1, 1)]})}
    return t, s, batch, torch.tensor([[1, 0, 1]])


def test_fg_term_authors_hand_computed():
    t, s, batch, labels_m = _fg_case()
    step = CSDStep(CsdConfig(variant="authors"))
    fg, _ = step.terms(s, torch.zeros_like(s), t, batch, labels_m)
    p_t = softmax([0.0, 2 / (2 + EPS), 1 / (2 + EPS)])  # class min-max, x fg_teacher_scale 1
    p_s = softmax([0.0, 0.0, 2 / (2 + EPS)])  # over the K classes only: no background channel
    expected = term(p_t, p_s, 1) / 2  # one kept cell of the two fully covered ones
    assert float(fg) == pytest.approx(expected, rel=1e-5)
    full_kl = sum(p * (math.log(p) - math.log(q)) for p, q in zip(p_t, p_s)) / 2
    assert abs(expected - full_kl) > 1e-3  # the pasted channel alone is not the KL
    # the teacher's scale multiplies its normalised maps
    scaled = CSDStep(CsdConfig(variant="authors", fg_teacher_scale=2.0))
    p_t2 = softmax([0.0, 4 / (2 + EPS), 2 / (2 + EPS)])
    assert float(scaled.terms(s, s, t, batch, labels_m)[0]) == pytest.approx(
        term(p_t2, p_s, 1) / 2, rel=1e-5)


def test_fg_term_zero_outside_full_cells_and_below_the_threshold():
    t, s, batch, labels_m = _fg_case()
    step = CSDStep(CsdConfig(variant="authors"))
    fg = step.terms(s, s, t, batch, labels_m)[0]
    s2 = s.clone()
    s2[0, :, 0, 1] += torch.tensor([5.0, -3.0, 1.0])  # covered, teacher below 0.5
    s2[0, :, 1, 0] += torch.tensor([-2.0, 4.0, 0.0])  # half covered
    s2[0, :, 1, 1] += 9.0  # not covered
    assert torch.equal(step.terms(s2, s, t, batch, labels_m)[0], fg)
    s2[0, 2, 0, 0] += 1.0  # the kept cell
    assert not torch.equal(step.terms(s2, s, t, batch, labels_m)[0], fg)
    # other teacher channels matter only through p_t[c]: swapping classes 0 and 2 keeps it
    t2 = t.clone()
    t2[0, [0, 2], 0, 0] = t[0, [2, 0], 0, 0]
    assert float(step.terms(s, s, t2, batch, labels_m)[0]) == pytest.approx(float(fg), rel=1e-6)
    # a threshold above every normalised value keeps no cell; a negative one keeps them all
    none = CSDStep(CsdConfig(variant="authors", fg_teacher_threshold=1.5))
    assert float(none.terms(s, s, t, batch, labels_m)[0]) == 0.0
    every = CSDStep(CsdConfig(variant="authors", fg_teacher_threshold=-1.0))
    assert float(every.terms(s, s, t, batch, labels_m)[0]) != pytest.approx(float(fg))
    # on its own with variant=ours: the threshold zeroes the fg term, the bg term is unchanged
    ours, cut = CSDStep(CsdConfig()), CSDStep(CsdConfig(fg_teacher_threshold=1.5))
    assert float(ours.terms(s, s, t, batch, labels_m)[0]) > 0
    assert float(cut.terms(s, s, t, batch, labels_m)[0]) == 0.0
    assert torch.equal(cut.terms(s, s, t, batch, labels_m)[1],
                       ours.terms(s, s, t, batch, labels_m)[1])


def _bg_case():
    """M = 2, K = 2. B covers (0, 0) and (1, 1) of image 0 and (0, 1) of image 1."""
    g = torch.Generator().manual_seed(2)
    t, s = torch.randn(2, 2, 2, 2, generator=g), torch.randn(2, 2, 2, 2, generator=g)
    values = {(0, 0, 0): ((0.2, 0.4), (0.1, 0.05)), (0, 1, 1): ((1.0, 0.0), (0.3, 0.2)),
              (1, 0, 1): ((0.0, 0.0), (0.5, -0.2))}  # (n, i, j): (teacher, student)
    for (n, i, j), (tv, sv) in values.items():
        t[n, :, i, j], s[n, :, i, j] = torch.tensor(tv), torch.tensor(sv)
    batch = {"cls": torch.tensor([0, 1]), "m_fg": torch.zeros(2, 32, 32, dtype=torch.bool),
             "m_bg": cells_mask(2, {0: [(0, 0), (1, 1)], 1: [(0, 1)]})}
    return t, s, batch, torch.tensor([[0, 1], [1, 0]]), values


def test_bg_term_authors_hand_computed():
    t, s, batch, labels_m, values = _bg_case()
    step = CSDStep(CsdConfig(variant="authors"))
    _, bg = step.terms(torch.zeros_like(s), s, t, batch, labels_m)
    per = {}
    for key, (tv, sv) in values.items():  # raw maps + 0.1; teacher T = 1, student x 10
        per[key] = term(softmax([*tv, 0.1]), softmax([10 * v for v in (*sv, 0.1)]), 2)
    expected = ((per[(0, 0, 0)] + per[(0, 1, 1)]) / 2 + per[(1, 0, 1)]) / 2  # per image
    assert float(bg) == pytest.approx(expected, rel=1e-5)
    assert abs(expected - sum(per.values()) / 3) > 1e-4  # not the mean over all cells
    # only the background channel counts: swapping the student's classes changes nothing
    s2 = s.clone()
    s2[:, [0, 1]] = s[:, [1, 0]]
    assert float(step.terms(s, s2, t, batch, labels_m)[1]) == pytest.approx(float(bg), rel=1e-6)
    s2 = s.clone()
    s2[0, :, 0, 1] += 3.0  # a cell outside B
    assert torch.equal(step.terms(s, s2, t, batch, labels_m)[1], bg)


class TinyCam(nn.Module):
    """The CAM contract on 8x8 inputs: maps [N, K, 2, 2]; records each forward's batch size."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.conv, self.sizes = nn.Conv2d(3, k, 1), []

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.sizes.append(len(x))
        maps = F.avg_pool2d(self.conv(x), 4)
        return {"maps": maps, "logits": maps.mean((2, 3))}

    def classification_loss(self, out: dict, labels: torch.Tensor) -> torch.Tensor:
        return F.multilabel_soft_margin_loss(out["logits"], labels.float())


def _batch(epoch: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = lambda n: torch.randn(n, 3, 8, 8, generator=g)  # noqa: E731
    return {"img": x(2), "label": torch.tensor([[1.0, 1, 0], [1, 0, 0]]),
            "epoch": torch.tensor([epoch, epoch]), "skipped": torch.tensor(0),
            "rows": torch.tensor([0]), "x_s": x(1), "x_fg": x(1), "x_bg": x(1),
            "m_fg": torch.ones(1, 8, 8, dtype=torch.bool),
            "m_bg": torch.ones(1, 8, 8, dtype=torch.bool), "cls": torch.tensor([2])}


@pytest.mark.parametrize("variant", ["ours", "authors"])
def test_start_epoch_switches_the_terms_on(variant):
    torch.manual_seed(0)
    model = TinyCam(3)
    step = CSDStep(CsdConfig(variant=variant, start_epoch=2, lambda_fg=1.0, lambda_bg=1.0))
    batch = _batch(1)
    loss, scalars = step(model, batch)
    assert model.sizes == [2]  # X_m alone: the baseline's step
    plain = model.classification_loss(model(batch["img"]), batch["label"])
    assert torch.equal(loss, plain)
    assert (scalars["csd_samples"], scalars["loss_fg"], scalars["loss_bg"]) == (0.0, 0.0, 0.0)
    model.sizes.clear()
    loss, scalars = step(model, _batch(2))
    assert model.sizes[0] == 4 and scalars["csd_samples"] == 1.0  # [X_m; X_sm_fg; X_sm_bg]
    assert scalars["loss_fg"] != 0.0 and scalars["loss_bg"] != 0.0
    assert float(loss) == pytest.approx(
        scalars["loss_cls"] + scalars["loss_fg"] + scalars["loss_bg"], rel=1e-5)


def test_resolution_sets_every_value():
    a = resolve_variant(CsdConfig(variant="authors"))
    expected = {"normalizer": "class_minmax", "bg_normalizer": "none", "beta": 0.1,
                "temperature": 1.0, "fg_background": False, "bg_student_scale": 10.0,
                "fg_kl_terms": "pasted", "bg_kl_terms": "background", "reduction": "images",
                "kl_channels": "all", "kl_classes": "all", "teacher_classes": "all",
                "masks": "final", "fg_teacher_threshold": 0.5,
                # free options, the authors' values equal ours: unchanged
                "start_epoch": 0, "teacher": "detached", "fg_paste": "same_location",
                "fg_teacher_scale": 1.0, "lambda_fg": 0.01, "lambda_bg": 0.1}
    assert {k: getattr(a, k) for k in expected} == expected
    assert resolve_variant(a) == a  # idempotent
    assert CSDStep(CsdConfig(variant="authors")).cfg == a  # the step reads the resolved one
    ours = resolve_variant(CsdConfig())
    assert ours == CsdConfig(masks="confident")  # ours: every default, masks named
    # chosen values stay ablation axes; fixed ones may be restated
    kept = resolve_variant(CsdConfig(variant="authors", masks="confident",
                                     fg_teacher_threshold=0.3, teacher="frozen", beta=0.1))
    assert (kept.masks, kept.fg_teacher_threshold, kept.teacher) == ("confident", 0.3, "frozen")
    check_config(CsdConfig(variant="authors"))


@pytest.mark.parametrize("option,value", [("beta", 0.3), ("normalizer", "max"),
                                          ("kl_channels", "pasted"), ("temperature", 0.5),
                                          ("bg_normalizer", "global"), ("bg_kl_terms", "pasted"),
                                          ("bg_student_scale", 5.0)])
def test_resolution_rejects_a_contradicting_option(option, value):
    with pytest.raises(ConfigError, match=f"csd.{option}="):
        resolve_variant(CsdConfig(variant="authors", **{option: value}))
    with pytest.raises(ConfigError, match=f"csd.{option}="):
        load_config(None, ["csd.variant=authors", f"csd.{option}={value}"])


def test_resolution_rejects_bad_names():
    with pytest.raises(ConfigError, match="csd.variant must be one of ours, authors"):
        load_config(None, ["csd.variant=paper"])
    with pytest.raises(ConfigError, match="csd.masks must be one of"):
        resolve_variant(CsdConfig(masks="crf"))
    with pytest.raises(ConfigError, match="fg_background=true"):
        check_config(CsdConfig(fg_background=False, fg_kl_terms="background"))
    with pytest.raises(ConfigError, match="start_epoch"):
        check_config(CsdConfig(start_epoch=-1))


def test_mask_dir_follows_the_variant(tmp_path):
    cfg = Config(run_root=str(tmp_path), name="csd")
    cfg.csd.from_run = "base"
    assert mask_dir(cfg)[0] == Path(tmp_path) / "csd" / "csd_masks"  # its own, not base's
    cfg.csd.variant = "authors"
    folder, command = mask_dir(cfg)
    assert folder == Path(tmp_path) / "base" / "sem_seg" and "make-sem-seg" in command
    cfg.csd.masks = "confident"
    assert mask_dir(cfg)[0] == Path(tmp_path) / "csd" / "csd_masks"
    cfg.csd.mask_source = str(tmp_path / "mine")
    assert mask_dir(cfg)[0] == tmp_path / "mine"


def test_the_normalizer_setting_lists_exactly_the_registered_normalizers():
    """csd.normalizer's allowed values (checked at load) are the functions the loss can call."""
    import typing

    from csdseg.config.sections import Normalizer
    from csdseg.csd.consistency import NORMALIZERS

    assert set(typing.get_args(Normalizer)) == set(NORMALIZERS)
