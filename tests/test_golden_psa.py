"""csdseg's PSA (AffinityNet, its labels, loss and random walk) against the official code's
outputs (tests/golden/psa/README.md).

Same seeded weights, same images: AffinityNet's affinities, infer_cls's low/high-alpha CRF
scores, train_aff's affinity labels, loss and one optimiser step, infer_aff's random walk
(PSA's and MCTformer's settings). Each stage is fed the official upstream outputs. Maps agree
within 1e-4 of their maximum (the walk 2e-4), the loss within 1e-5, labels within 0.5% of
their entries (identical where recorded; the share is for another CPU's rounding).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from csdseg.data.transforms import normalize
from csdseg.models.affinitynet import AffinityNet
from csdseg.ops.psa_affinity import affinity_loss, crf_scores, pad_to_stride, pair_labels
from csdseg.ops.psa_walk import psa_walk
from golden.seeded import SEED_PSA, assert_labels_close, assert_map_close, golden, seeded_state

IMAGES = [0, 1]  # 100 x 90 and 92 x 108
CROP = 112  # train_aff's crop in the recording
LR, WEIGHT_DECAY, MOMENTUM = 0.1, 5e-4, 5e-4  # train_aff defaults; PSA's SGD momentum is wt_dec


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return golden("psa/psa")


@pytest.fixture(scope="module")
def net() -> AffinityNet:
    torch.set_num_threads(1)
    model = AffinityNet()
    state = seeded_state(model, SEED_PSA)
    state.update({k: torch.from_numpy(v) for k, v in golden("psa/psa_bn_stats").items()})
    model.load_state_dict(state)
    return model.eval()


def _padded_input(img: np.ndarray) -> torch.Tensor:
    """infer_aff's input: the normalised image, zero-padded to multiples of 8 [1, 3, H', W']."""
    return pad_to_stride(torch.from_numpy(normalize(img))[None])


def _train_crop(ref: dict, i: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """train_aff's sample with the crop at the top-left: (image [3, 112, 112] normalised after
    zero-padding the raw pixels, low/high-alpha scores [112, 112, 1 + K'], zeros outside)."""
    img = ref[f"images_{i}"]
    h, w = img.shape[:2]
    raw = np.zeros((CROP, CROP, 3), np.uint8)
    raw[:h, :w] = img
    la, ha = (np.zeros((CROP, CROP, ref[f"{k}_{i}"].shape[0]), np.float32) for k in ("la", "ha"))
    la[:h, :w], ha[:h, :w] = ref[f"la_{i}"].transpose(1, 2, 0), ref[f"ha_{i}"].transpose(1, 2, 0)
    return torch.from_numpy(normalize(raw)), la, ha


@pytest.mark.parametrize("i", IMAGES)
def test_affinity_map(ref, net, i: int) -> None:
    with torch.no_grad():
        aff = net(_padded_input(ref[f"images_{i}"]))[0]
    assert_map_close(aff, ref[f"aff_{i}"], f"image {i} affinities")


@pytest.mark.parametrize("which, alpha", [("la", 4), ("ha", 32)])
def test_crf_scores(ref, which: str, alpha: int) -> None:
    """infer_cls's _crf_with_alpha from the official CAMs (PSA's alphas 4 and 32)."""
    for i in IMAGES:
        got = crf_scores(ref[f"images_{i}"], ref[f"cam_{i}"], alpha)
        want = ref[f"{which}_{i}"]
        assert got.shape == want.shape
        assert float(np.abs(got - want).max()) <= 1e-6, f"image {i} {which}"


def test_affinity_labels(ref) -> None:
    for i in IMAGES:
        _, la, ha = _train_crop(ref, i)
        for name, got in zip(("bg", "fg", "neg"), pair_labels(la, ha)):
            want = ref[f"train_{name}_{i}"]
            assert_labels_close(got, want, f"image {i} {name} pairs")


def _batch(ref) -> tuple[torch.Tensor, list[torch.Tensor]]:
    order = [int(i) for i in ref["train_order"]]
    x = torch.stack([_train_crop(ref, i)[0] for i in order])
    labels = [torch.from_numpy(np.stack([ref[f"train_{k}_{i}"] for i in order]).astype(np.float32))
              for k in ("bg", "fg", "neg")]
    return x, labels


def test_loss_and_one_step(ref, net) -> None:
    """train_aff's first step (dropout off, as recorded): the affinities of the batch, the
    loss and its terms, and the weights after one PolyOptimizer step."""
    x, labels = _batch(ref)
    loss, parts = affinity_loss(torch.from_numpy(ref["train_aff"]), *labels)
    want = ref["train_parts"]  # bg, fg, neg losses; bg, fg, neg counts (+ 1e-5)
    np.testing.assert_allclose(float(loss), float(ref["train_loss"]), rtol=1e-5)
    got = [float(parts[k]) for k in ("bg", "fg", "neg", "bg_count", "fg_count", "neg_count")]
    np.testing.assert_allclose(got, want, rtol=1e-5)

    before = {k: v.clone() for k, v in net.state_dict().items()}
    trainable = {n: p.requires_grad for n, p in net.named_parameters()}
    try:  # the step is taken on the shared model (building another costs seconds): undone below
        groups = net.param_groups(LR, WEIGHT_DECAY)
        # only the head and b7 need gradients for the checked tensors (their gradients do not
        # depend on what else learns); skipping the rest keeps the backward pass short
        for n, p in net.named_parameters():
            p.requires_grad_(trainable[n] and n.startswith(("f8_", "f9.", "b7.")))
        opt = torch.optim.SGD(groups, lr=LR, momentum=MOMENTUM)
        aff = net(x)  # eval mode: batch norms are frozen either way; no dropout, as recorded
        assert_map_close(aff.detach(), ref["train_aff"], "training affinities")
        loss, _ = affinity_loss(aff, *labels)
        np.testing.assert_allclose(float(loss.detach()), float(ref["train_loss"]), rtol=1e-4)
        loss.backward()
        opt.step()
        state = net.state_dict()
        assert_map_close(state["f8_3.weight"][:8], ref["train_f8_3_after"], "f8_3 after a step")
        assert_map_close(state["b7.conv_branch2b2.weight"][:4, :8], ref["train_b7_conv_after"],
                         "b7 after a step")
    finally:
        net.zero_grad(set_to_none=True)
        net.load_state_dict(before)
        for n, p in net.named_parameters():
            p.requires_grad_(trainable[n])


WALKS = [("rw", dict(alpha=16.0, logt=8)), ("rw_t2", dict(alpha=16.0, logt=2)),
         ("mct_rw", dict(alpha=None, bg_threshold=0.39, logt=6))]


@pytest.mark.parametrize("i", IMAGES)
@pytest.mark.parametrize("name, settings", WALKS, ids=[w[0] for w in WALKS])
def test_random_walk(ref, i: int, name: str, settings: dict) -> None:
    """infer_aff from the official CAMs and affinities: walked maps and the pseudo-mask."""
    keys = ref[f"keys_{i}"]
    labels, walked = psa_walk(torch.from_numpy(ref[f"cam_{i}"]), keys,
                              torch.from_numpy(ref[f"aff_{i}"]), beta=8.0, **settings)
    full = ref[f"{name}_{i}"]
    channels = np.concatenate([[0], keys + 1])
    assert_map_close(walked, full[channels], f"image {i} {name}", rtol=2e-4)
    assert not np.delete(full, channels, axis=0).any()  # absent classes stay 0 officially
    want = ref[f"{name}_label_{i}"]
    assert_labels_close(labels, want, f"image {i} {name} pseudo-mask")


def test_golden_checks_can_fail(ref, net) -> None:
    """A perturbed input, a wrong alpha or a wrong step count is caught."""
    img = ref["images_0"].copy()
    img[40:56, 40:56] = 255 - img[40:56, 40:56]
    with torch.no_grad():
        aff = net(_padded_input(img))[0]
    with pytest.raises(AssertionError):
        assert_map_close(aff, ref["aff_0"], "perturbed image")
    assert float(np.abs(crf_scores(ref["images_0"], ref["cam_0"], 8) - ref["la_0"]).max()) > 1e-3
    keys = ref["keys_0"]
    _, walked = psa_walk(torch.from_numpy(ref["cam_0"]), keys, torch.from_numpy(ref["aff_0"]),
                         alpha=16.0, logt=3)
    with pytest.raises(AssertionError):
        assert_map_close(walked, ref["rw_t2_0"][np.concatenate([[0], keys + 1])], "3 vs 2",
                         rtol=2e-4)
