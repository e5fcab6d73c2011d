"""The segmentation-network registry: ``seg.model`` -> a :class:`~csdseg.models.registry.ModelEntry`.

Contract shared by every model in :data:`SEG_MODELS` (train-seg, eval-seg and predict rely on
it; tests/test_model_contract.py checks each entry):

- built by ``build_seg_model(name, num_classes=K, pretrained=..., **options)`` where K counts
  the foreground classes; the network predicts K + 1 channels, channel 0 being background;
- ``forward(x: [B, 3, H, W]) -> logits [B, K + 1, h, w]`` with ``h = ceil(H / logit_stride)``
  (``logit_stride`` is the output stride for DeepLab-v2, 4 for DeepLab-v3+'s decoder);
  callers upsample bilinearly to the input size (csdseg/ops/seg_inference.py);
- ``param_groups(lr, weight_decay, head_mult)`` -> optimiser groups (csdseg/models/optim_groups.py):
  the pretrained backbone at ``lr``, the freshly initialised head at ``lr x head_mult``;
- ``config() -> dict``: the constructor arguments, stored in the checkpoint's meta so that
  ``predict`` can rebuild the network from the checkpoint alone (csdseg/engine/checkpoint.py);
- ``min_input_size``: inputs smaller than this are padded by the inference helpers.

The networks: csdseg/models/deeplab_v2.py and deeplab_v3plus.py, over seg_blocks.py.
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from csdseg.models.registry import ModelEntry, build_from

_V2, _V3 = "csdseg.models.deeplab_v2", "csdseg.models.deeplab_v3plus"
V2_OPTIONS = ("backbone", "output_stride", "frozen_bn")
V3_OPTIONS = ("backbone", "output_stride")

# a dict literal with constant keys: the config check reads the names from this source.
# crop_size: DeepLab-v2's VOC recipe trains at 321, DeepLab-v3+ at 512.
SEG_MODELS: dict[str, ModelEntry] = {
    "deeplabv2_resnet101": ModelEntry(_V2, "deeplabv2_resnet101",
                                      "DeepLab-v2 (ASPP-L) on ResNet-101", V2_OPTIONS, 321),
    "deeplabv2_tiny": ModelEntry(_V2, "deeplabv2_tiny", "DeepLab-v2 on ResNet-10-T for tests",
                                 V2_OPTIONS, 321),
    "deeplabv2_lite0": ModelEntry(_V2, "deeplabv2_lite0",
                                  "DeepLab-v2 on EfficientNet-Lite0 (offline ImageNet: lite)",
                                  V2_OPTIONS, 321),
    "deeplabv2_lite2": ModelEntry(_V2, "deeplabv2_lite2", "DeepLab-v2 on EfficientNet-Lite2",
                                  V2_OPTIONS, 321),
    "deeplabv3plus": ModelEntry(_V3, "deeplabv3plus", "DeepLab-v3+ on ResNet-101", V3_OPTIONS,
                                512),
    "deeplabv3plus_tiny": ModelEntry(_V3, "deeplabv3plus_tiny",
                                     "DeepLab-v3+ on ResNet-10-T, narrow head, for tests",
                                     V3_OPTIONS, 512),
}

# The crop each model trains at by default (train-seg's seg.crop_size=0).
DEFAULT_CROP: dict[str, int] = {name: entry.crop_size for name, entry in SEG_MODELS.items()}


def build_seg_model(name: str, num_classes: int, pretrained: str = "none",
                    **options: Any) -> nn.Module:
    """The segmentation network ``name`` for ``num_classes`` foreground classes; ValueError for
    an unknown name or bad options / weights."""
    return build_from(SEG_MODELS, "segmentation model", name, num_classes, pretrained, **options)
