"""IRN's inter-pixel relation network: class-boundary and displacement branches on a ResNet.

Following IRN (net/resnet50_irn.py): an ImageNet ResNet with strides (2, 2, 2, 1) whose
features are detached and whose batch norms stay in eval mode -- the backbone is frozen and
only the two new branches learn. Both branches read all five levels (stem+maxpool at stride 4,
layers 1-4 at strides 4, 8, 16, 16) through 1x1 conv + GroupNorm + ReLU layers, with IRN's
widths: the boundary branch takes 32 channels per level into a 1x1 conv to one logit; the
displacement branch (64/128/256/256/256 channels) merges the deep levels at stride 8 and then
everything at stride 4 into a 2-channel (dy, dx) field. Outputs are at stride 4.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from csdseg.models.cam_resnet import _make_last_stage_stride_one
from csdseg.models.optim_groups import param_group
from csdseg.models.pretrained import create_timm_model

# the lightweight backbones (timm names) are for CPU demos and tests
BACKBONES = ("resnet50.tv_in1k", "resnet50", "resnet18", "resnet10t")


def _branch(cin: int, cout: int, groups: int, up: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 1, bias=False), nn.GroupNorm(groups, cout)]
    if up > 1:  # IRN upsamples before the ReLU
        layers.append(nn.Upsample(scale_factor=up, mode="bilinear", align_corners=False))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class MeanShift(nn.BatchNorm2d):
    """IRN's displacement centring: tracks the field's running mean in training, and
    subtracts it at inference (an un-affine batch norm that never scales)."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            super().forward(x.detach())  # only to update running_mean
            return x
        return x - self.running_mean.view(1, -1, 1, 1)


class IRNet(nn.Module):
    feature_stride = 4

    def __init__(self, backbone: str = "resnet50.tv_in1k", pretrained: str = "none",
                 train_backbone: bool = False) -> None:
        super().__init__()
        # IRN freezes an ImageNet backbone; a backbone trained from scratch on a classification
        # task has weak low-level edges, so from-scratch presets may let it learn (deviation).
        self.train_backbone = train_backbone
        if backbone not in BACKBONES:
            raise ValueError(f"irn.backbone '{backbone}' is not one of: {', '.join(BACKBONES)}")
        net = create_timm_model(backbone, pretrained, num_classes=0, global_pool="")
        _make_last_stage_stride_one(net.layer4)
        self.backbone = nn.ModuleList([
            nn.Sequential(net.conv1, net.bn1, net.act1, net.maxpool),
            net.layer1, net.layer2, net.layer3, net.layer4,
        ])
        for p in self.backbone.parameters():
            p.requires_grad_(train_backbone)
        ch = self._channels()
        self.edge_layers = nn.ModuleList([
            _branch(ch[0], 32, 4), _branch(ch[1], 32, 4), _branch(ch[2], 32, 4, up=2),
            _branch(ch[3], 32, 4, up=4), _branch(ch[4], 32, 4, up=4),
            nn.Conv2d(160, 1, 1, bias=True),
        ])
        self.dp_layers = nn.ModuleList([
            _branch(ch[0], 64, 8), _branch(ch[1], 128, 16), _branch(ch[2], 256, 16),
            _branch(ch[3], 256, 16, up=2), _branch(ch[4], 256, 16, up=2),
            _branch(768, 256, 16, up=2),
            nn.Sequential(_branch(448, 256, 16), nn.Conv2d(256, 2, 1, bias=False), MeanShift(2)),
        ])

    # CAM classifier (csdseg.models.cam_resnet) stage names -> our backbone slots
    CAM_PREFIXES = {"stage1.0.": "backbone.0.0.", "stage1.1.": "backbone.0.1.",
                    "stage1.4.": "backbone.1.", "stage2.": "backbone.2.", "stage3.": "backbone.3.",
                    "stage4.": "backbone.4."}

    def load_backbone_from_cam(self, cam_state: dict[str, torch.Tensor]) -> int:
        """Copy a CAM classifier's backbone (same timm architecture) into ours; returns the
        number of tensors copied. For from-scratch runs, where no ImageNet weights exist."""
        own = self.state_dict()
        copied = {}
        for key, value in cam_state.items():
            for src, dst in self.CAM_PREFIXES.items():
                if key.startswith(src) and dst + key[len(src):] in own:
                    copied[dst + key[len(src):]] = value
        expected = [k for k in own if k.startswith("backbone.")]
        if len(copied) != len(expected):
            raise ValueError(f"the CAM checkpoint fills {len(copied)} of {len(expected)} backbone "
                             "tensors: irn.backbone must be the CAM model's architecture")
        self.load_state_dict(copied, strict=False)
        return len(copied)

    def _channels(self) -> list[int]:
        with torch.no_grad():
            feats = self.backbone_features(torch.zeros(1, 3, 64, 64))
        return [f.shape[1] for f in feats]

    def train(self, mode: bool = True) -> "IRNet":
        super().train(mode)
        if not self.train_backbone:
            self.backbone.eval()  # frozen: batch norms keep their ImageNet statistics
        return self

    def backbone_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Five levels at strides 4, 4, 8, 16, 16; without gradients unless ``train_backbone``."""
        feats = []
        with torch.set_grad_enabled(self.train_backbone and torch.is_grad_enabled()):
            for stage in self.backbone:
                x = stage(x)
                feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 3, H, W] -> boundary logits [B, 1, h, w] and displacement [B, 2, h, w],
        h, w = ceil(H/4), ceil(W/4)."""
        x1, x2, x3, x4, x5 = self.backbone_features(x)
        h, w = x2.shape[-2:]
        e = self.edge_layers
        edges = [e[0](x1), e[1](x2)] + [e[i](f)[..., :h, :w] for i, f in ((2, x3), (3, x4), (4, x5))]
        edge = e[5](torch.cat(edges, dim=1))
        d = self.dp_layers
        d3 = d[2](x3)
        h8, w8 = d3.shape[-2:]
        deep = torch.cat([d3, d[3](x4)[..., :h8, :w8], d[4](x5)[..., :h8, :w8]], dim=1)
        dp = d[6](torch.cat([d[0](x1), d[1](x2), d[5](deep)[..., :h, :w]], dim=1))
        return edge, dp

    def param_groups(self, lr: float, weight_decay: float, head_mult: float) -> list[dict]:
        """IRN: the boundary branch at ``lr``, the displacement branch at ``lr x head_mult``
        (``irn.dp_lr_mult``, IRN: 10x), and a learning backbone, if any, at ``lr``."""
        backbone = ([param_group(list(self.backbone.parameters()), lr, weight_decay)]
                    if self.train_backbone else [])
        return backbone + [
            param_group(list(self.edge_layers.parameters()), lr, weight_decay),
            param_group(list(self.dp_layers.parameters()), lr, weight_decay, head_mult),
        ]

    @torch.no_grad()
    def edge_displacement(self, x: torch.Tensor, crop_size: int = 512
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """IRN's EdgeDisplacement: x [3, H, W] -> (boundary probability [h, w], displacement
        [2, h, w]), h, w = ceil(H/4), ceil(W/4). The boundary is the sigmoid of the mean of the
        image's and its mirror's logits; the displacement is the image's.

        As the official code, the image and its mirror are zero-padded at the bottom and right
        to ``crop_size`` x ``crop_size`` (IRN's training crop) before the network and the
        outputs cropped back: GroupNorm's statistics span the whole map, so the padding changes
        the result, and it makes inference see what training on zero-padded crops saw. Where a
        side exceeds ``crop_size`` it is padded to its own length rounded up to a multiple of
        16 instead (the official negative padding would crop the image, e.g. on COCO).
        """
        if x.dim() != 3:
            raise ValueError(f"edge_displacement takes one image [3, H, W], got {tuple(x.shape)}")
        size = x.shape[-2:]
        h, w = (size[0] - 1) // 4 + 1, (size[1] - 1) // 4 + 1
        pad_h, pad_w = (max(crop_size, -(-s // 16) * 16) - s for s in size)
        pair = F.pad(torch.stack([x, x.flip(-1)]), [0, pad_w, 0, pad_h])
        edge, dp = self(pair)
        edge, dp = edge[..., :h, :w], dp[..., :h, :w]
        return torch.sigmoid(edge[0, 0] / 2 + edge[1, 0].flip(-1) / 2), dp[0]

    @torch.no_grad()
    def infer_boundary(self, x: torch.Tensor, crop_size: int = 512) -> torch.Tensor:
        """The boundary probability [ceil(H/4), ceil(W/4)] of :meth:`edge_displacement`."""
        return self.edge_displacement(x, crop_size)[0]
