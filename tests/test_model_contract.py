"""The model contract, checked on every registered model: each entry of the CAM registry
(csdseg/models/__init__.py) and of the segmentation registry (csdseg/models/deeplab.py), built
with random weights and run on tiny inputs. A new backbone family that is registered is tested
here without writing a test: outputs, optimiser groups, the entry's options, bad names."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from csdseg.config import ModelConfig, SegConfig
from csdseg.models import MODELS, build_model
from csdseg.models.deeplab import SEG_MODELS, build_seg_model
from csdseg.models.irn import IRNet
from csdseg.models.registry import ModelEntry
from csdseg.ops.cam import UPSAMPLE_MODES
from csdseg.stages.cam_model import build_cam_model

pytestmark = pytest.mark.usefixtures("one_thread")
K, H, W = 3, 48, 40  # W not a multiple of 16: the grid's rounding is part of the contract
LR, WD, MULT = 0.2, 1e-3, 7.0


def check_param_groups(model: torch.nn.Module, ignores_mult: bool = False) -> None:
    """``param_groups(lr, weight_decay, head_mult)``: every trainable parameter in exactly one
    group, no frozen one; each group's lr is the base lr times its lr_mult (what set_lr keeps)."""
    groups = model.param_groups(LR, WD, MULT)
    ids = [id(p) for g in groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert len(ids) == len(set(ids)), "a parameter is in two groups"
    assert sorted(ids) == sorted(trainable), "groups miss a trainable or hold a frozen parameter"
    for g in groups:
        assert set(g) == {"params", "lr", "lr_mult", "weight_decay"} and g["params"]
        assert g["lr"] == LR * g["lr_mult"] and g["weight_decay"] in (WD, 0.0)
    mults = {g["lr_mult"] for g in groups}
    assert mults == ({1.0} if ignores_mult else {1.0, MULT})
    torch.optim.SGD(groups, lr=LR)  # torch takes them as they are


def test_every_entry_has_one_shape():
    for registry in (MODELS, SEG_MODELS):
        for name, entry in registry.items():
            assert isinstance(entry, ModelEntry) and entry.about, name
            assert entry.module.startswith("csdseg.models."), name


# --- CAM classifiers ------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(MODELS))
def test_cam_model_contract(name):
    entry = MODELS[name]
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    assert set(entry.options) <= fields, "options are named as the model.* settings feeding them"
    torch.manual_seed(0)
    # through the app's builder: the entry's options, from the model.* defaults, are accepted
    model = build_cam_model(ModelConfig(name=name, pretrained="none", detach_after=0,
                                        frozen_bn=False), K).train()
    assert model.upsample in UPSAMPLE_MODES and isinstance(model.feature_stride, int)
    s = model.feature_stride
    grid = ((math.ceil(H / s), math.ceil(W / s)) if model.upsample == "strided"
            else (H // s, W // s))
    x = torch.randn(2, 3, H, W)
    out = model(x)
    assert out["logits"].shape == (2, K) and out["maps"].shape == (2, K, *grid)
    assert out["maps"].requires_grad  # CSD's losses act on the maps
    loss = model.classification_loss(out, torch.tensor([[1.0, 0, 1], [0, 1, 0]]))
    assert loss.ndim == 0 and torch.isfinite(loss)
    with torch.no_grad():
        cam = model.eval().cam(x)
    assert cam.shape == (2, K, *grid) and cam.min() >= 0
    check_param_groups(model, ignores_mult=entry.module.endswith("mctformer"))


def test_cam_registry_refuses_an_unknown_name():
    with pytest.raises(ValueError, match="'resnet51_cam' is not one of: resnet50_cam"):
        build_model("resnet51_cam", K)


# --- segmentation networks ------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SEG_MODELS))
def test_seg_model_contract(name):
    entry = SEG_MODELS[name]
    assert entry.crop_size > 0
    assert set(entry.options) <= {f.name for f in dataclasses.fields(SegConfig)}
    torch.manual_seed(0)
    options = {"output_stride": 16, **({"frozen_bn": False} if "frozen_bn" in entry.options
                                       else {})}
    model = build_seg_model(name, K, "none", **options).train()
    x = torch.randn(2, 3, H, W)
    logits = model(x)
    stride = model.logit_stride
    assert logits.shape == (2, K + 1, math.ceil(H / stride), math.ceil(W / stride))
    assert model.min_input_size >= 1
    check_param_groups(model)
    # config() rebuilds the same network from the checkpoint's meta alone
    again = build_seg_model(name, K, "none", **model.config())
    assert {k: v.shape for k, v in again.state_dict().items()} == \
        {k: v.shape for k, v in model.state_dict().items()}


def test_seg_registry_refuses_an_unknown_name():
    with pytest.raises(ValueError, match="'deeplab_v9' is not one of: deeplabv2_resnet101"):
        build_seg_model("deeplab_v9", K)


# --- IRN (not a registry: one network) shares the param_groups signature --------------------

@pytest.mark.parametrize("train_backbone", [False, True])
def test_irn_param_groups(train_backbone):
    check_param_groups(IRNet("resnet10t", "none", train_backbone=train_backbone))
