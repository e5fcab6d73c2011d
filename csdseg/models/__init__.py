"""Model registry: a plain dict from ``model.name`` to the builder that makes it.

Every CAM classifier (the networks ``train-cam`` trains) follows one contract, so train-cam,
make-cam and CSD work with any of them:

- ``forward(x: [B, 3, H, W]) -> dict`` with ``"logits"`` [B, K] and ``"maps"`` [B, K, h, w],
  the differentiable class activation maps at the feature stride (raw, before ReLU/normalising);
- ``classification_loss(out, labels: [B, K]) -> scalar`` (multilabel soft-margin for IRN);
- ``param_groups(cfg: OptimConfig) -> list[dict]`` for the optimiser;
- ``cam(x: [B, 3, H, W]) -> [B, K, h, w]``: the maps make-cam sums over scales (ReLU applied);
- ``feature_stride: int``;
- ``upsample: str``, how the map grid lies on the image's pixels, which make-cam follows
  (csdseg.ops.cam): ``"strided"`` for a CNN whose grid has ceil(H/s) cells, the last one
  overhanging (resize to ceil(H/s)*s, then crop: IRN), ``"resize"`` for a ViT whose grid has
  floor(H/p) cells covering the image (resize straight to H x W: the official MCTformer).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import torch.nn as nn

if TYPE_CHECKING:
    from csdseg.config import ModelConfig

# name -> (module, builder). Builders take (num_classes, pretrained, **kwargs).
MODELS: dict[str, tuple[str, str]] = {
    "resnet50_cam": ("csdseg.models.cam_resnet", "resnet50_cam"),
    "resnet18_cam": ("csdseg.models.cam_resnet", "resnet18_cam"),
    "resnet10t_cam": ("csdseg.models.cam_resnet", "resnet10t_cam"),
    "efficientnet_lite0_cam": ("csdseg.models.cam_efficientnet", "efficientnet_lite0_cam"),
    "efficientnet_lite1_cam": ("csdseg.models.cam_efficientnet", "efficientnet_lite1_cam"),
    "efficientnet_lite2_cam": ("csdseg.models.cam_efficientnet", "efficientnet_lite2_cam"),
    "mctformer_v1": ("csdseg.models.mctformer", "mctformer_v1"),
    "mctformer_v2": ("csdseg.models.mctformer", "mctformer_v2"),
    "mctformer_v1_tiny": ("csdseg.models.mctformer", "mctformer_v1_tiny"),
    "mctformer_v2_tiny": ("csdseg.models.mctformer", "mctformer_v2_tiny"),
}


def build_model(name: str, num_classes: int, pretrained: str = "none", **kwargs: Any) -> nn.Module:
    if name not in MODELS:
        from csdseg.config import ConfigError

        raise ConfigError(f"model.name '{name}' is not one of: {', '.join(MODELS)}")
    module, builder = MODELS[name]
    return getattr(importlib.import_module(module), builder)(num_classes=num_classes,
                                                             pretrained=pretrained, **kwargs)


def build_cam_model(cfg: "ModelConfig", num_classes: int) -> nn.Module:
    """The CAM classifier ``cfg`` describes (the ResNet and EfficientNet-Lite families take
    IRN's freezing options)."""
    if cfg.num_classes and cfg.num_classes != num_classes:
        from csdseg.config import ConfigError

        raise ConfigError(f"model.num_classes={cfg.num_classes} but the dataset has {num_classes} "
                          "classes; set model.num_classes=0 to take it from the dataset")
    kwargs: dict[str, Any] = {}
    if MODELS.get(cfg.name, ("",))[0] in ("csdseg.models.cam_resnet",
                                          "csdseg.models.cam_efficientnet"):
        kwargs = {"detach_after": cfg.detach_after, "frozen_bn": cfg.frozen_bn}
    elif MODELS.get(cfg.name, ("",))[0] == "csdseg.models.mctformer":
        kwargs = {"drop_path_rate": cfg.drop_path_rate, "patch_attn_refine": cfg.patch_attn_refine}
    return build_model(cfg.name, num_classes, cfg.pretrained, **kwargs)
