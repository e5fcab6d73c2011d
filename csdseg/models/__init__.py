"""Model registry: a plain dict from ``model.name`` to the builder that makes it.

Every CAM classifier (the networks ``train-cam`` trains) follows one contract, so train-cam,
make-cam and CSD work with any of them:

- ``forward(x: [B, 3, H, W]) -> dict`` with ``"logits"`` [B, K] and ``"maps"`` [B, K, h, w],
  the differentiable class activation maps at the feature stride (raw, before ReLU/normalising);
- ``classification_loss(out, labels: [B, K]) -> scalar`` (multilabel soft-margin for IRN);
- ``param_groups(cfg: OptimConfig) -> list[dict]`` for the optimiser;
- ``cam(x: [B, 3, H, W]) -> [B, K, h, w]``: the maps make-cam sums over scales (ReLU applied);
- ``feature_stride: int``.
"""
from __future__ import annotations

import importlib
from typing import Any

import torch.nn as nn

# name -> (module, builder). Builders take (num_classes, pretrained, **kwargs).
MODELS: dict[str, tuple[str, str]] = {
    "resnet50_cam": ("csdseg.models.cam_resnet", "resnet50_cam"),
    "resnet18_cam": ("csdseg.models.cam_resnet", "resnet18_cam"),
    "resnet10t_cam": ("csdseg.models.cam_resnet", "resnet10t_cam"),
}


def build_model(name: str, num_classes: int, pretrained: str = "none", **kwargs: Any) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"model.name '{name}' is not one of: {', '.join(MODELS)}")
    module, builder = MODELS[name]
    return getattr(importlib.import_module(module), builder)(num_classes=num_classes,
                                                             pretrained=pretrained, **kwargs)
