"""IRN's CAM classifier: a ResNet at output stride 16 with a bias-free 1x1 classifier.

Following IRN (net/resnet50_cam.py): strides (2, 2, 2, 1) with no dilation in the last stage,
batch-norm statistics frozen, the stem frozen and the features detached after stage 2, so only
stages 3-4 and the classifier learn. Logits are the classifier on globally average-pooled
features, which (the classifier being linear and bias-free) equals the spatial mean of the
class activation maps; we compute the maps once and pool them.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from csdseg.config import OptimConfig
from csdseg.models.pretrained import create_timm_model


def _make_last_stage_stride_one(stage: nn.Module) -> None:
    """Turn the first block's stride-2 convolution (and its shortcut) into stride 1, no dilation."""
    block = stage[0]
    for module in block.modules():
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
            module.stride = (1, 1)
    downsample = getattr(block, "downsample", None)
    if isinstance(downsample, nn.Sequential):  # resnet-d variants shrink with an AvgPool
        for i, module in enumerate(downsample):
            if isinstance(module, nn.AvgPool2d) and module.stride == 2:
                downsample[i] = nn.Identity()


class CAMResNet(nn.Module):
    feature_stride = 16
    upsample = "strided"  # ceil(H/16) cells, the last overhanging: IRN's resize-then-crop

    def __init__(self, arch: str, num_classes: int, pretrained: str = "none",
                 detach_after: int = 2, frozen_bn: bool = True) -> None:
        super().__init__()
        if detach_after not in (0, 1, 2):
            raise ValueError(f"detach_after must be 0, 1 or 2, got {detach_after}")
        net = create_timm_model(arch, pretrained, num_classes=0, global_pool="")
        _make_last_stage_stride_one(net.layer4)
        self.stage1 = nn.Sequential(net.conv1, net.bn1, net.act1, net.maxpool, net.layer1)
        self.stage2, self.stage3, self.stage4 = net.layer2, net.layer3, net.layer4
        self.classifier = nn.Conv2d(net.num_features, num_classes, 1, bias=False)
        self.detach_after, self.frozen_bn = detach_after, frozen_bn
        if detach_after > 0:  # IRN freezes the stem's convolution and batch norm
            for p in list(net.conv1.parameters()) + list(net.bn1.parameters()):
                p.requires_grad_(False)
        self.num_classes = num_classes

    def train(self, mode: bool = True) -> "CAMResNet":
        super().train(mode)
        if self.frozen_bn:  # IRN's FixedBatchNorm: always the running statistics
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, C, ceil(H/16), ceil(W/16)]."""
        x = self.stage1(x)
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


def resnet50_cam(num_classes: int, pretrained: str = "none", **kwargs) -> CAMResNet:
    """IRN's network: ResNet-50 with torchvision's ImageNet weights (IRN uses the same)."""
    return CAMResNet("resnet50.tv_in1k", num_classes, pretrained, **kwargs)


def resnet18_cam(num_classes: int, pretrained: str = "none", **kwargs) -> CAMResNet:
    return CAMResNet("resnet18.tv_in1k", num_classes, pretrained, **kwargs)


def resnet10t_cam(num_classes: int, pretrained: str = "none", **kwargs) -> CAMResNet:
    """The tiny option for CPU demos and tests."""
    return CAMResNet("resnet10t.c3_in1k", num_classes, pretrained, **kwargs)
