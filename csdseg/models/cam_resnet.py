"""IRN's CAM classifier: a ResNet at output stride 16 with a bias-free 1x1 classifier.

Following IRN (net/resnet50_cam.py): strides (2, 2, 2, 1) with no dilation in the last stage,
batch-norm statistics frozen, the stem frozen and the features detached after stage 2, so only
stages 3-4 and the classifier learn (the shared part: csdseg/models/cam_base.py).
"""
from __future__ import annotations

import torch.nn as nn

from csdseg.models.cam_base import StagedCAM
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


class CAMResNet(StagedCAM):
    upsample = "strided"  # ceil(H/16) cells, the last overhanging: IRN's resize-then-crop

    def __init__(self, arch: str, num_classes: int, pretrained: str = "none",
                 detach_after: int = 2, frozen_bn: bool = True) -> None:
        super().__init__()
        net = create_timm_model(arch, pretrained, num_classes=0, global_pool="")
        _make_last_stage_stride_one(net.layer4)
        self.stage1 = nn.Sequential(net.conv1, net.bn1, net.act1, net.maxpool, net.layer1)
        self.stage2, self.stage3, self.stage4 = net.layer2, net.layer3, net.layer4
        self.classifier = nn.Conv2d(net.num_features, num_classes, 1, bias=False)
        self.setup(num_classes, detach_after, frozen_bn, stem=[net.conv1, net.bn1])


def resnet50_cam(num_classes: int, pretrained: str = "none", **kwargs) -> CAMResNet:
    """IRN's network: ResNet-50 with torchvision's ImageNet weights (IRN uses the same)."""
    return CAMResNet("resnet50.tv_in1k", num_classes, pretrained, **kwargs)


def resnet18_cam(num_classes: int, pretrained: str = "none", **kwargs) -> CAMResNet:
    return CAMResNet("resnet18.tv_in1k", num_classes, pretrained, **kwargs)


def resnet10t_cam(num_classes: int, pretrained: str = "none", **kwargs) -> CAMResNet:
    """The tiny option for CPU demos and tests."""
    return CAMResNet("resnet10t.c3_in1k", num_classes, pretrained, **kwargs)
