"""csdseg's IRN stages against the official code's outputs (tests/golden/README.md).

Same seeded weights, same images: make-cam's maps, the confident labels, the boundary map
and displacement field, the random walk and its pseudo-masks. Maps agree within 1e-4 of their
maximum (the random walk within 2e-4: see the README), labels within 0.5% of their pixels
(identical where recorded; the share is for another CPU's rounding at a threshold).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from csdseg.config import Config, IrnConfig
from csdseg.data.transforms import normalize, rescale
from csdseg.models.cam_resnet import resnet50_cam
from csdseg.models.irn import IRNet
from csdseg.ops.cam import multiscale_cam
from csdseg.ops.confident_labels import confident_labels
from csdseg.ops.random_walk import random_walk, walk_to_labels
from csdseg.stages.make_sem_seg import walk_one
from golden.seeded import (SEED_CAM, SEED_IRN, assert_labels_close, assert_map_close, golden,
                           seeded_model)

IMAGES = [0, 1, 2]  # 83 x 97, 64 x 96, 100 x 75
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return golden("irn")


@pytest.fixture(scope="module")
def irn() -> IRNet:
    torch.set_num_threads(1)
    return seeded_model(IRNet("resnet50.tv_in1k", "none"), SEED_IRN, "irn.")


@pytest.fixture(scope="module")
def edges(ref, irn) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """csdseg's (boundary, displacement) per image, padded to irn.crop_size as make-sem-seg."""
    crop = IrnConfig().crop_size
    return {i: irn.edge_displacement(torch.from_numpy(normalize(ref[f"images_{i}"])), crop)
            for i in IMAGES}


def test_make_cam_maps(ref) -> None:
    model = seeded_model(resnet50_cam(20, "none"), SEED_CAM, "cam.")
    for i in IMAGES:
        img = ref[f"images_{i}"]
        views = [torch.from_numpy(np.ascontiguousarray(np.stack([x, x[:, :, ::-1]])))
                 for x in (normalize(rescale(img, s)) for s in ref["scales"])]
        keys = torch.from_numpy(np.nonzero(ref["labels"][i])[0])
        np.testing.assert_array_equal(keys.numpy(), ref[f"keys_{i}"])
        low, high = multiscale_cam(model.cam, views, img.shape[:2], keys, CPU, "max",
                                   model.upsample, model.feature_stride)
        assert_map_close(low, ref[f"cam_{i}"], f"image {i} cam")
        assert_map_close(high, ref[f"high_res_{i}"], f"image {i} high_res")


@pytest.mark.parametrize("suffix, fg, bg", [("", 0.30, 0.05), ("hi_", 0.6, 0.35)])
def test_confident_labels(ref, suffix: str, fg: float, bg: float) -> None:
    for i in IMAGES:
        record = {"keys": ref[f"keys_{i}"], "high_res": ref[f"high_res_{i}"]}
        got = confident_labels(ref[f"images_{i}"], record, fg, bg)
        want = ref[f"ir_label_{suffix}{i}"]
        assert_labels_close(got, want, f"image {i} confident labels")


@pytest.mark.parametrize("i", IMAGES)
def test_boundary_and_displacement(ref, edges, i: int) -> None:
    boundary, displacement = edges[i]
    assert_map_close(boundary, ref[f"boundary_{i}"][0], f"image {i} boundary")
    assert_map_close(displacement, ref[f"displacement_{i}"], f"image {i} displacement")


@pytest.mark.parametrize("i", IMAGES)
def test_random_walk_and_labels(ref, i: int) -> None:
    """Given the official boundary and CAMs: the walked maps and the pseudo-mask."""
    cams, boundary = (torch.from_numpy(ref[f"{k}_{i}"]) for k in ("cam", "boundary"))
    rw = random_walk(cams, boundary[0])
    assert_map_close(rw, ref[f"rw_{i}"], f"image {i} random walk", rtol=2e-4)
    labels = walk_to_labels(rw, ref[f"keys_{i}"], ref[f"images_{i}"].shape[:2])
    want = ref[f"sem_seg_{i}"]
    assert_labels_close(labels, want, f"image {i} pseudo-mask")


class _Source:
    def __init__(self, images: dict[str, np.ndarray]) -> None:
        self.images = images

    def load_image(self, image_id: str) -> np.ndarray:
        return self.images[image_id]


def test_make_sem_seg_pseudo_mask(ref, irn, tmp_path) -> None:
    """make-sem-seg's own path (walk_one: its boundary, padding included) on the official
    CAM file gives the official pseudo-mask, pixel for pixel."""
    i = 0
    # encoded as the official make_cam.py saves it: keys and cam torch tensors, high_res an array
    np.save(tmp_path / "img.npy", {"keys": torch.from_numpy(ref[f"keys_{i}"]),
                                   "cam": torch.from_numpy(ref[f"cam_{i}"]),
                                   "high_res": ref[f"high_res_{i}"]})
    labels = walk_one(irn, _Source({"img": ref[f"images_{i}"]}), tmp_path, "img", Config(),
                      CPU)
    want = ref[f"sem_seg_{i}"]
    assert_labels_close(labels, want, "make-sem-seg pseudo-mask")
