"""make-cam: IRN's .npy format, the multi-scale arithmetic, resumability, clear refusals."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config
from csdseg.files.cam import load_cam
from csdseg.data import build_source
from csdseg.ops.cam import multiscale_cam, strided_size, strided_up_size
from csdseg.runs import MissingInputError, RunDir
from csdseg.stages import make_cam, train_cam


def test_strided_sizes_match_irn():
    assert strided_size((375, 500), 4) == (94, 125)
    assert strided_up_size((375, 500), 16) == (384, 512)


def test_single_scale_equals_upsampled_normalised_maps():
    torch.manual_seed(0)
    maps = torch.rand(1, 3, 5, 7)
    cam_fn = lambda x: maps.expand(x.shape[0], -1, -1, -1)  # noqa: E731 - a fixed "network"
    low, high = multiscale_cam(cam_fn, [torch.zeros(1, 3, 37, 53)], (37, 53), torch.tensor([0, 2]),
                               torch.device("cpu"))
    ref = F.interpolate(maps, (48, 64), mode="bilinear", align_corners=False)[0, [0, 2], :37, :53]
    ref = ref / (ref.amax(dim=(1, 2), keepdim=True) + 1e-5)
    assert high.shape == (2, 37, 53) and low.shape == (2, 10, 14)
    assert torch.allclose(high, ref, atol=1e-6)


def test_resize_convention_for_vit_grids():
    """A ViT's floor(H/p) grid is resized straight to (H, W) (the official MCTformer), not
    strided-and-cropped (IRN's CNN convention); both agree where H, W are multiples of 16."""
    torch.manual_seed(0)
    maps = torch.rand(1, 2, 2, 3)  # a 37 x 53 image: floor(37/16) x floor(53/16) patches
    cam_fn = lambda x: maps  # noqa: E731
    args = ([torch.zeros(1, 3, 37, 53)], (37, 53), torch.tensor([0, 1]), torch.device("cpu"),
            "minmax")
    _, high = multiscale_cam(cam_fn, *args, upsample="resize")
    ref = F.interpolate(maps, (37, 53), mode="bilinear", align_corners=False)[0]
    low_ = ref.amin(dim=(1, 2), keepdim=True)
    ref = (ref - low_) / (ref.amax(dim=(1, 2), keepdim=True) - low_ + 1e-8)
    assert torch.allclose(high, ref, atol=1e-6)
    _, strided = multiscale_cam(cam_fn, *args, upsample="strided")
    assert (strided - high).abs().max() > 0.1
    even = ([torch.zeros(1, 3, 32, 48)], (32, 48), torch.tensor([0]), torch.device("cpu"))
    torch.testing.assert_close(multiscale_cam(cam_fn, *even, upsample="resize"),
                               multiscale_cam(cam_fn, *even, upsample="strided"))
    with pytest.raises(ValueError, match="upsample must be one of strided, resize"):
        multiscale_cam(cam_fn, *args, upsample="nearest")


def test_every_cam_model_states_its_upsampling():
    from csdseg.models import build_model

    assert build_model("resnet10t_cam", 3).upsample == "strided"
    assert build_model("mctformer_v2_tiny", 3).upsample == "resize"


def test_flip_is_undone_before_summing():
    # a "network" that returns the input's first channel: the mirrored view, flipped back,
    # must add up to twice the original map
    cam_fn = lambda x: x[:, :1].relu()  # noqa: E731
    x = torch.rand(1, 3, 16, 24)
    views = [torch.cat([x, x.flip(-1)])]
    _, high = multiscale_cam(cam_fn, views, (16, 24), torch.tensor([0]), torch.device("cpu"))
    _, ref = multiscale_cam(cam_fn, [x], (16, 24), torch.tensor([0]), torch.device("cpu"))
    assert torch.allclose(high, ref, atol=1e-5)


@pytest.fixture(scope="module")
def trained(synth_root, tmp_path_factory):
    cfg = tiny_config(synth_root, tmp_path_factory.mktemp("runs"), "train.max_steps=3",
                      "data.infer_split=val")
    train_cam.run(cfg)
    return cfg


def test_make_cam_writes_irn_format_and_resumes(trained):
    result = make_cam.run(trained)
    source = build_source(trained.data, "val")
    assert result == {"written": len(source), "skipped": 0}
    cam_dir = RunDir.from_config(trained).cam_dir
    for image_id in source.ids:
        data = load_cam(cam_dir / f"{image_id}.npy")
        h, w = source.load_image(image_id).shape[:2]
        assert np.array_equal(data.keys, np.nonzero(source.label(image_id))[0])
        assert data.high_res.shape == (len(data.keys), h, w)
        assert data.cam.shape == (len(data.keys), (h + 3) // 4, (w + 3) // 4)
        assert data.high_res.max() <= 1.0 and data.high_res.min() >= 0.0
    before = {p.name: p.read_bytes() for p in cam_dir.iterdir()}
    assert make_cam.run(trained) == {"written": 0, "skipped": len(source)}
    assert {p.name: p.read_bytes() for p in cam_dir.iterdir()} == before
    assert not list(cam_dir.glob(".*.tmp"))  # no half-written files left behind


def test_make_cam_without_checkpoint_says_which_command(synth_root, tmp_path):
    cfg = tiny_config(synth_root, tmp_path)
    with pytest.raises(MissingInputError, match="run `csdseg train-cam` first"):
        make_cam.run(cfg)
