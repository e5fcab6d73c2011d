"""CAM classifiers: every registered ResNet and EfficientNet-Lite CAM model checked on the CPU
with tiny inputs (random weights; the Lite weights files: tests/test_cam_efficientnet.py)."""
import time

import pytest
import timm
import torch

from csdseg.config import ConfigError, ModelConfig, OptimConfig
from csdseg.models import MODELS, build_model
from csdseg.models import pretrained as pretrained_mod
from csdseg.stages.cam_model import build_cam_model

RESNET_CAMS = [n for n, e in MODELS.items() if e.module == "csdseg.models.cam_resnet"]
LITE_CAMS = [n for n, e in MODELS.items() if e.module == "csdseg.models.cam_efficientnet"]


class CamModelTester:
    """Base tester: subclasses name a model; the contract is checked the same way for each."""

    name = ""
    size = (64, 96)

    def build(self, **kw):
        torch.manual_seed(0)
        return build_model(self.name, num_classes=5, pretrained="none", **kw)

    def test_output_stride_and_shapes(self):
        model = self.build().train()
        out = model(torch.randn(2, 3, *self.size))
        stride = model.feature_stride
        assert out["logits"].shape == (2, 5)
        assert out["maps"].shape == (2, 5, self.size[0] // stride, self.size[1] // stride)
        assert torch.isfinite(out["maps"]).all()

    def test_cam_is_non_negative(self):
        model = self.build().eval()
        with torch.no_grad():
            cam = model.cam(torch.randn(1, 3, *self.size))
        assert cam.min() >= 0 and cam.shape[1] == 5

    def test_trainable_parameters_receive_gradients(self):
        model = self.build(detach_after=0, frozen_bn=False).train()
        out = model(torch.randn(2, 3, *self.size))
        loss = model.classification_loss(out, torch.tensor([[1.0, 0, 1, 0, 0], [0, 1, 0, 0, 1]]))
        loss.backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing


class TestResnet10tCam(CamModelTester):
    name = "resnet10t_cam"


class TestResnet18Cam(CamModelTester):
    name = "resnet18_cam"


class TestResnet50Cam(CamModelTester):
    name = "resnet50_cam"


class TestEfficientnetLite0Cam(CamModelTester):
    name = "efficientnet_lite0_cam"


class TestEfficientnetLite1Cam(CamModelTester):
    name = "efficientnet_lite1_cam"


class TestEfficientnetLite2Cam(CamModelTester):
    name = "efficientnet_lite2_cam"


def test_every_cnn_cam_model_has_a_tester():
    tested = {cls.name for cls in CamModelTester.__subclasses__()}
    assert len(LITE_CAMS) == 3 and set(RESNET_CAMS + LITE_CAMS) <= tested


@pytest.mark.parametrize("name", ["resnet10t_cam", "efficientnet_lite0_cam"])
def test_irn_freezing_options_reach_each_cnn_family(name):
    model = build_cam_model(ModelConfig(name=name, pretrained="none", detach_after=1,
                                        frozen_bn=False), 3)
    assert model.detach_after == 1 and not model.frozen_bn
    assert model.feature_stride == 16 and model.upsample == "strided"


def test_irn_freezing_logits_and_frozen_bn():
    model = build_model("resnet10t_cam", 4, "none", detach_after=2, frozen_bn=True).train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)  # IRN's FixedBatchNorm
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    # the classifier on pooled features equals the spatial mean of the maps (bias-free, linear)
    pooled = model.features(x).mean(dim=(2, 3))
    assert torch.allclose(out["logits"], pooled @ model.classifier.weight[:, :, 0, 0].T, atol=1e-5)
    model.classification_loss(out, torch.ones(2, 4)).backward()
    assert all(p.grad is None for p in model.stage1.parameters())
    assert all(p.grad is None for p in model.stage2.parameters())
    assert model.stage3[0].conv1.weight.grad is not None


def test_param_groups_give_the_classifier_ten_times_the_lr():
    model = build_model("resnet10t_cam", 4, "none")
    optim = OptimConfig()
    groups = model.param_groups(optim.lr, optim.weight_decay, optim.head_lr_mult)
    assert [g["lr"] for g in groups] == [0.1, 1.0]
    assert groups[1]["params"] == [model.classifier.weight]
    assert all(p.requires_grad for p in groups[0]["params"])


def test_pretrained_weights_from_a_local_file(tmp_path):
    reference = timm.create_model("resnet10t", pretrained=False)
    path = tmp_path / "resnet10t.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("resnet10t_cam", 3, str(path))
    assert torch.equal(model.stage1[0][0].weight, reference.conv1[0].weight)
    assert torch.equal(model.stage4[0].conv1.weight, reference.layer4[0].conv1.weight)


def test_missing_local_weights_file_is_a_clear_error(tmp_path):
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="no such file") as raised:  # the model layer's error
        build_model("resnet10t_cam", 3, missing)
    assert not isinstance(raised.value, ConfigError)
    # ... which the app, building from model.* settings, turns into a one-line ConfigError
    with pytest.raises(ConfigError, match=f"model.pretrained={missing}: no such file"):
        build_cam_model(ModelConfig(name="resnet10t_cam", pretrained=missing), 3)


def test_hub_unreachable_fails_within_seconds(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(pretrained_mod, "_hub_reachable", lambda *a, **k: False)
    start = time.time()
    with pytest.raises(ValueError, match="model.pretrained=/path/to/weights.pth"):
        build_model("resnet10t_cam", 3, "hub")
    assert time.time() - start < 5


def test_unknown_model_and_class_count_mismatch():
    with pytest.raises(ValueError, match="'resnet51_cam' is not one of"):
        build_model("resnet51_cam", 3)
    with pytest.raises(ConfigError, match="model.num_classes=7 but the dataset has 20"):
        build_cam_model(ModelConfig(name="resnet10t_cam", pretrained="none", num_classes=7), 20)


@pytest.mark.parametrize("name", ["resnet10t_cam", "mctformer_v2_tiny"])
def test_classification_loss_is_float32_under_autocast(name):
    """Under AMP the logits are half precision; the loss (a log-sigmoid) is taken in float32."""
    torch.manual_seed(0)
    model = build_model(name, 4, "none").eval()
    x, labels = torch.randn(2, 3, 64, 64), torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0]])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        loss = model.classification_loss(out, labels)
    assert loss.dtype == torch.float32  # (the ResNet's logits are bfloat16 here)
    half = {k: v.float() for k, v in out.items() if torch.is_tensor(v)}
    assert torch.allclose(loss, model.classification_loss(half, labels), rtol=1e-6)
