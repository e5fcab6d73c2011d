"""DeepLab-v2 / v3+ models: shapes, ASPP rates, dilations, param groups, weights, inference."""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from csdseg.engine.checkpoint import load_seg_model, save_final
from csdseg.engine.schedule import poly_lr, set_lr
from csdseg.errors import StageError
from csdseg.models.deeplab import build_seg_model
from csdseg.models.deeplab_v2 import ASPPv2
from csdseg.models.deeplab_v3plus import ASPPv3
from csdseg.ops.seg_inference import predict_probs

CPU = torch.device("cpu")


@pytest.mark.parametrize("name,os_,expect", [
    ("deeplabv2_tiny", 8, (8, 6)), ("deeplabv2_tiny", 16, (4, 3)),
    ("deeplabv3plus_tiny", 8, (16, 12)), ("deeplabv3plus_tiny", 16, (16, 12)),
])
def test_output_shapes(name, os_, expect):
    model = build_seg_model(name, num_classes=3, output_stride=os_).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 48))
    assert out.shape == (2, 4, *expect)  # K + 1 channels
    assert model.logit_stride == (os_ if name.startswith("deeplabv2") else 4)


def test_bad_output_stride_names_allowed_values():
    with pytest.raises(ValueError, match="output_stride must be 8 or 16, got 32"):
        build_seg_model("deeplabv2_tiny", 3, output_stride=32)
    with pytest.raises(ValueError, match="not one of: deeplabv2_resnet101"):
        build_seg_model("deeplab_v9", 3)


def _dilations(module: nn.Module) -> list[int]:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    for c in convs:  # same-size output needs padding == dilation for a 3x3
        assert c.padding == c.dilation
    return [c.dilation[0] for c in convs]


def test_aspp_rates_are_the_configured_ones():
    v2 = build_seg_model("deeplabv2_tiny", 3)
    assert isinstance(v2.aspp, ASPPv2) and _dilations(v2.aspp) == [6, 12, 18, 24]
    assert _dilations(build_seg_model("deeplabv2_tiny", 3, rates=(3, 5)).aspp) == [3, 5]
    v3_16 = build_seg_model("deeplabv3plus_tiny", 3, output_stride=16)
    v3_8 = build_seg_model("deeplabv3plus_tiny", 3, output_stride=8)
    assert isinstance(v3_16.aspp, ASPPv3)
    assert _dilations(v3_16.aspp.branches) == [6, 12, 18]
    assert _dilations(v3_8.aspp.branches) == [12, 24, 36]  # doubled at stride 8, as the paper


def test_backbone_dilated_at_output_stride_8():
    model = build_seg_model("deeplabv2_tiny", 3, output_stride=8)
    convs = dict(model.backbone.named_modules())
    assert convs["layer3.0.conv2"].dilation == (2, 2) and convs["layer3.0.conv2"].stride == (1, 1)
    assert convs["layer4.0.conv2"].dilation == (4, 4) and convs["layer4.0.conv2"].stride == (1, 1)


@pytest.mark.parametrize("name", ["deeplabv2_tiny", "deeplabv3plus_tiny"])
def test_param_groups_give_the_head_ten_times_the_lr(name):
    model = build_seg_model(name, 3, **({"frozen_bn": False} if "v2" in name else {}))
    groups = model.param_groups(0.1, 5e-4, 10.0)
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    set_lr(opt, 0.01)
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    assert all(id(p) in backbone_ids for p in opt.param_groups[0]["params"])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.1)
    assert not any(id(p) in backbone_ids for p in opt.param_groups[1]["params"])
    covered = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(covered) == sorted(id(p) for p in model.parameters() if p.requires_grad)


def test_frozen_batchnorm_stays_in_eval_mode():
    model = build_seg_model("deeplabv2_tiny", 3, frozen_bn=True).train()
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    assert all(not p.requires_grad for m in bns for p in m.parameters())


def test_poly_schedule_values():
    assert poly_lr(2.5e-4, 0, 100) == pytest.approx(2.5e-4)
    assert poly_lr(2.5e-4, 50, 100) == pytest.approx(1.339717e-4, rel=1e-6)  # 0.5 ** 0.9 = 0.535887
    assert poly_lr(2.5e-4, 90, 100) == pytest.approx(3.147314e-5, rel=1e-6)  # 0.1 ** 0.9 = 0.125893
    assert poly_lr(2.5e-4, 100, 100) == 0.0


def test_local_pretrained_weights_are_loaded(tmp_path):
    ref = timm.create_model("resnet10t", pretrained=False)
    torch.save(ref.state_dict(), tmp_path / "r10t.pth")
    model = build_seg_model("deeplabv2_tiny", 3, pretrained=str(tmp_path / "r10t.pth"))
    assert torch.equal(model.backbone.conv1[0].weight, ref.conv1[0].weight)
    assert torch.equal(model.backbone.layer4[0].conv2.weight, ref.layer4[0].conv2.weight)
    torch.save({"fc.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="does not fit backbone resnet10t"):
        build_seg_model("deeplabv2_tiny", 3, pretrained=str(tmp_path / "bad.pth"))
    with pytest.raises(ValueError, match="'hub', 'none' or an existing weights file"):
        build_seg_model("deeplabv2_tiny", 3, pretrained=str(tmp_path / "absent.pth"))


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_single_scale_inference_is_upsampled_softmax():
    torch.manual_seed(0)
    model = build_seg_model("deeplabv2_tiny", 3).eval()
    img = _image(40, 56)
    from csdseg.data.transforms import normalize

    with torch.no_grad():
        logits = model(torch.from_numpy(normalize(img))[None])
        ref = F.interpolate(logits, size=(40, 56), mode="bilinear", align_corners=False).softmax(1)[0]
    probs = predict_probs(model, img, CPU, scales=(1.0,), flip=False)
    assert probs.shape == (4, 40, 56)
    np.testing.assert_allclose(probs, ref.numpy(), atol=1e-5)


def test_flip_and_scales_average_the_views():
    torch.manual_seed(0)
    model = build_seg_model("deeplabv3plus_tiny", 2).eval()
    img = _image(40, 48, seed=1)
    one = predict_probs(model, img, CPU, scales=(1.0,), flip=False)
    mirrored = predict_probs(model, img[:, ::-1].copy(), CPU, scales=(1.0,), flip=False)[..., ::-1]
    both = predict_probs(model, img, CPU, scales=(1.0,), flip=True)
    np.testing.assert_allclose(both, (one + mirrored) / 2, atol=1e-5)
    half = predict_probs(model, img, CPU, scales=(0.5,), flip=False)
    multi = predict_probs(model, img, CPU, scales=(0.5, 1.0), flip=False)
    np.testing.assert_allclose(multi, (half + one) / 2, atol=1e-5)
    np.testing.assert_allclose(multi.sum(0), 1.0, atol=1e-5)


def test_tiny_image_is_padded_and_cropped_back():
    model = build_seg_model("deeplabv3plus_tiny", 2).eval()
    probs = predict_probs(model, _image(5, 7), CPU, scales=(0.5, 1.0), flip=True)
    assert probs.shape == (3, 5, 7)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)


def test_checkpoint_round_trip_needs_only_the_meta(tmp_path):
    torch.manual_seed(0)
    model = build_seg_model("deeplabv2_tiny", 2, output_stride=16, frozen_bn=False).eval()
    meta = {"model": "deeplabv2_tiny", "num_classes": 2, "class_names": ["cat", "dog"],
            "model_config": model.config()}
    save_final(tmp_path / "seg.pt", model, meta)
    loaded, got = load_seg_model(tmp_path / "seg.pt", CPU)
    assert got["class_names"] == ["cat", "dog"] and loaded.output_stride == 16
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    save_final(tmp_path / "cam.pt", model, {"model": "resnet50_cam", "num_classes": 2})
    with pytest.raises(StageError, match="not a segmentation checkpoint"):
        load_seg_model(tmp_path / "cam.pt", CPU)


def test_a_checkpoint_from_before_the_frozen_bn_rename_still_loads(tmp_path):
    """DeepLab-v2's option was ``freeze_bn`` before it took seg.frozen_bn's name; checkpoints
    written then record it under the old name and must rebuild the same network."""
    torch.manual_seed(0)
    model = build_seg_model("deeplabv2_tiny", 2, frozen_bn=False).eval()
    options = model.config()
    options["freeze_bn"] = options.pop("frozen_bn")
    save_final(tmp_path / "seg.pt", model, {"model": "deeplabv2_tiny", "num_classes": 2,
                                            "class_names": ["a", "b"], "model_config": options})
    loaded, _ = load_seg_model(tmp_path / "seg.pt", CPU)
    assert loaded.frozen_bn is False
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
