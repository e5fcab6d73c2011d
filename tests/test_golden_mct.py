"""csdseg's MCTformer V1/V2 against the official code's outputs (tests/golden/README.md).

Same seeded weights, same images (83 x 97 and 100 x 75 are not multiples of the 16-px patch):
class-token (and V2 patch) logits, class-to-patch attention, V2's patch CAM and fused maps, the
patch-attention refinement, and make-cam's multi-scale min-max maps, each within 1e-4 of its
maximum.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from csdseg.data.transforms import normalize, rescale
from csdseg.models.mctformer import MCTformer, mctformer_v1, mctformer_v2
from csdseg.ops.cam import multiscale_cam
from golden.seeded import SEED_MCT, assert_map_close, golden, seeded_model

IMAGES = [0, 1, 2]
BUILDERS = {2: (mctformer_v2, SEED_MCT), 1: (mctformer_v1, SEED_MCT + 1)}


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return golden("mct")


@pytest.fixture(scope="module", params=[2, 1], ids=["v2", "v1"])
def model(request) -> MCTformer:
    torch.set_num_threads(1)
    build, seed = BUILDERS[request.param]
    return seeded_model(build(20, "none"), seed)


def _class_to_patch(model: MCTformer, x: torch.Tensor) -> torch.Tensor:
    """Head-mean class-to-patch attention summed over the last ``attn_layers`` layers."""
    K, last = model.num_classes, set(range(model.depth - model.attn_layers, model.depth))
    _, attns, (h, w) = model._encode(x, last)
    return sum(attns[i][:, :K, K:] for i in sorted(last)).reshape(-1, K, h, w)


@torch.no_grad()
def test_single_view_outputs(ref, model: MCTformer) -> None:
    p = f"v{model.version}_"
    for i in IMAGES:
        x = torch.from_numpy(normalize(ref[f"images_{i}"]))[None]
        out = model(x, maps=True)
        assert_map_close(out["logits"], ref[p + f"logits_{i}"], f"{p}{i} class-token logits")
        assert_map_close(_class_to_patch(model, x), ref[p + f"mtatt_{i}"],
                         f"{p}{i} class-to-patch attention")
        if model.version == 2:
            assert_map_close(out["patch_logits"], ref[p + f"patch_logits_{i}"],
                             f"{p}{i} patch logits")
            K = model.num_classes
            tokens, _, (h, w) = model._encode(x, set())
            patch_cam = model.head(tokens[:, K:].transpose(1, 2).reshape(1, -1, h, w))
            assert_map_close(patch_cam.relu(), ref[p + f"patchcam_{i}"], f"{p}{i} patch CAM")
            assert_map_close(out["maps"], ref[p + f"fused_{i}"], f"{p}{i} fused maps")
        assert_map_close(model.attention_maps(x, refine=True)[0], ref[p + f"refined_{i}"],
                         f"{p}{i} refined maps")


def test_make_cam_high_res(ref, model: MCTformer) -> None:
    """make-cam's maps (scales 1, 0.5, 1.5 with flips; min-max) equal the official
    generate_attention_maps_ms output: the grid resized straight to the image (upsample)."""
    p = f"v{model.version}_"
    for i in IMAGES:
        img = ref[f"images_{i}"]
        views = [torch.from_numpy(np.ascontiguousarray(np.stack([x, x[:, :, ::-1]])))
                 for x in (normalize(rescale(img, s)) for s in ref["scales"])]
        keys = torch.from_numpy(np.nonzero(ref["labels"][i])[0])
        np.testing.assert_array_equal(keys.numpy(), ref[p + f"keys_{i}"])
        _, high = multiscale_cam(model.cam, views, img.shape[:2], keys, torch.device("cpu"),
                                 "minmax", model.upsample, model.feature_stride)
        assert_map_close(high, ref[p + f"high_res_{i}"], f"{p}{i} high_res")
