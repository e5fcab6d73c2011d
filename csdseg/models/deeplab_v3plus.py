"""DeepLab-v3+ (Chen et al., ECCV 2018) over any timm CNN backbone with ``features_only``.

Encoder: the backbone at output stride 16 (or 8), then ASPP: a 1x1 branch, three 3x3 dilated
branches (rates 6/12/18 at stride 16, doubled to 12/24/36 at stride 8, as in the paper) and
image-level pooling, each conv-BN-ReLU with ``aspp_channels`` outputs, concatenated and
projected by a 1x1 conv (+ dropout 0.5). Decoder: the stride-4 low-level features reduced to
``low_level_channels`` by a 1x1, concatenated with the upsampled ASPP output, two 3x3 convs
and a 1x1 classifier. Logits come out at stride 4: [B, K + 1, ceil(H / 4), ceil(W / 4)].
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from csdseg.models.optim_groups import split_param_groups
from csdseg.models.seg_blocks import init_head, make_backbone


def conv_bn_relu(cin: int, cout: int, k: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ASPPv3(nn.Module):
    """[B, C_in, h, w] -> [B, channels, h, w]: 1x1 + dilated 3x3 branches + image pooling."""

    def __init__(self, in_channels: int, channels: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        if not rates or any(int(r) < 1 for r in rates):
            raise ValueError(f"ASPP rates must be a non-empty list of integers >= 1, got {rates}")
        self.branches = nn.ModuleList(
            [conv_bn_relu(in_channels, channels, 1)]
            + [conv_bn_relu(in_channels, channels, 3, int(r)) for r in rates])
        self.pool = conv_bn_relu(in_channels, channels, 1)
        self.project = nn.Sequential(conv_bn_relu(channels * (len(rates) + 2), channels, 1),
                                     nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        pooled = self.pool(F.adaptive_avg_pool2d(x, 1))
        outs.append(pooled.expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(outs, 1))


class DeepLabV3Plus(nn.Module):
    """forward(x [B, 3, H, W]) -> logits [B, K + 1, ceil(H / 4), ceil(W / 4)]."""

    def __init__(self, num_classes: int, backbone: str = "resnet101.tv_in1k",
                 pretrained: str = "none", output_stride: int = 16,
                 rates: tuple[int, ...] | None = None, aspp_channels: int = 256,
                 decoder_channels: int = 256, low_level_channels: int = 48) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes (foreground classes) must be >= 1, got {num_classes}")
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        if rates is None:
            rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
        self._config = dict(backbone=backbone, output_stride=output_stride,
                            rates=[int(r) for r in rates], aspp_channels=aspp_channels,
                            decoder_channels=decoder_channels, low_level_channels=low_level_channels)
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.logit_stride = 4
        self.min_input_size = 32
        # index 1 is the stride-4 stage of timm CNNs (ResNet: layer1), index 4 the last one
        self.backbone = make_backbone(backbone, pretrained, output_stride, out_indices=(1, 4))
        reductions = self.backbone.feature_info.reduction()
        if reductions[0] != 4:
            raise ValueError(f"backbone {backbone} has no stride-4 feature level for the decoder "
                             f"(its levels are at strides {reductions})")
        low_in, high_in = self.backbone.feature_info.channels()
        self.aspp = ASPPv3(high_in, aspp_channels, tuple(rates))
        self.reduce = conv_bn_relu(low_in, low_level_channels, 1)
        self.decoder = nn.Sequential(
            conv_bn_relu(aspp_channels + low_level_channels, decoder_channels, 3),
            conv_bn_relu(decoder_channels, decoder_channels, 3))
        self.classifier = nn.Conv2d(decoder_channels, num_classes + 1, 1)
        self.head = nn.ModuleList([self.aspp, self.reduce, self.decoder, self.classifier])
        for m in self.head.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        init_head(self.classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.backbone(x)
        y = F.interpolate(self.aspp(high), size=low.shape[-2:], mode="bilinear",
                          align_corners=False)
        return self.classifier(self.decoder(torch.cat([y, self.reduce(low)], 1)))

    def param_groups(self, lr: float, weight_decay: float, head_mult: float) -> list[dict[str, Any]]:
        """The backbone at ``lr``, ASPP + decoder + classifier at ``lr x head_mult`` (10x)."""
        return split_param_groups(self.backbone, self.head, lr, weight_decay, head_mult)

    def config(self) -> dict[str, Any]:
        return dict(self._config)


def deeplabv3plus(num_classes: int, pretrained: str = "none", **kwargs: Any) -> DeepLabV3Plus:
    kwargs.setdefault("backbone", "resnet101.tv_in1k")
    return DeepLabV3Plus(num_classes, pretrained=pretrained, **kwargs)


def deeplabv3plus_tiny(num_classes: int, pretrained: str = "none", **kwargs: Any) -> DeepLabV3Plus:
    """ResNet-10-T backbone and 64/64/16-channel head for CPU tests."""
    kwargs.setdefault("backbone", "resnet10t")
    for key, value in (("aspp_channels", 64), ("decoder_channels", 64), ("low_level_channels", 16)):
        kwargs.setdefault(key, value)
    return DeepLabV3Plus(num_classes, pretrained=pretrained, **kwargs)
