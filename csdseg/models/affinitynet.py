"""PSA's AffinityNet: ResNet-38 features -> inter-pixel affinities (network/resnet38_aff.py).

Three feature levels of the backbone (csdseg/models/resnet38d.py) go through bias-free 1x1
convs with ELU: ``f8_3`` on ``conv4`` (8w -> w channels), ``f8_4`` on ``conv5`` (16w -> 2w),
``f8_5`` on ``conv6`` (64w -> 4w); their concatenation (7w) through ``f9`` (7w -> 7w, 1x1,
ELU) is the affinity feature map f [B, 7w, h, w] at stride 8 (w = 64: 64/128/256 -> 448, as
official). The affinity of pixels i, j within the radius (5) is exp(-mean_c |f_i - f_j|)
(csdseg.ops.psa_affinity.feature_affinity), in PSA's layout [B, D, Ns].

Initialisation as PSA: Kaiming-normal ``f8_*``, Xavier-uniform with gain 4 ``f9``. The new
convs learn at 10x the backbone's learning rate (``param_groups``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from csdseg.models.optim_groups import param_group
from csdseg.models.resnet38d import STAGE_DEPTHS, ResNet38d
from csdseg.ops.psa_affinity import PSA_RADIUS, feature_affinity, psa_pairs


class AffinityNet(ResNet38d):
    """PSA's ``resnet38_aff.Net`` at ``width`` (64 = official). Names match the official
    state dict: the backbone's, then ``f8_3``, ``f8_4``, ``f8_5``, ``f9``."""

    def __init__(self, width: int = 64, depths: tuple[int, ...] = STAGE_DEPTHS,
                 radius: int = PSA_RADIUS) -> None:
        super().__init__(width, depths)
        c4, c5, c6 = self.channels
        self.radius = radius
        self.f8_3 = nn.Conv2d(c4, width, 1, bias=False)
        self.f8_4 = nn.Conv2d(c5, 2 * width, 1, bias=False)
        self.f8_5 = nn.Conv2d(c6, 4 * width, 1, bias=False)
        self.f9 = nn.Conv2d(7 * width, 7 * width, 1, bias=False)
        for conv in (self.f8_3, self.f8_4, self.f8_5):
            nn.init.kaiming_normal_(conv.weight)
        nn.init.xavier_uniform_(self.f9.weight, gain=4)
        self.head_names = ("f8_3", "f8_4", "f8_5", "f9")
        self._pairs: dict[tuple[int, int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def affinity_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> f [B, 7w, ceil(H/8), ceil(W/8)]."""
        d = self.forward_features(x)
        f = torch.cat([F.elu(self.f8_3(d["conv4"])), F.elu(self.f8_4(d["conv5"])),
                       F.elu(self.f8_5(d["conv6"]))], dim=1)
        return F.elu(self.f9(f))

    def pairs(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """PSA's pair indices on an h x w grid (cached): src [Ns], dst [D, Ns]."""
        key = (h, w, str(device))
        if key not in self._pairs:
            src, dst = psa_pairs(h, w, self.radius)
            self._pairs[key] = (torch.from_numpy(src).to(device), torch.from_numpy(dst).to(device))
        return self._pairs[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> affinities [B, D, Ns] in (0, 1] (PSA's layout; D = 34 at radius 5,
        Ns = (h - 4) * (w - 8) sources on the ceil(H/8) x ceil(W/8) grid)."""
        f = self.affinity_features(x)
        src, dst = self.pairs(f.shape[2], f.shape[3], f.device)
        return feature_affinity(f, src, dst)

    def param_groups(self, lr: float, weight_decay: float, head_mult: float = 10.0
                     ) -> list[dict]:
        """PSA's groups: trainable backbone weights at ``lr``, the new convs at ``lr x
        head_mult`` (PSA: 10x), both with weight decay (the official bias groups are empty:
        every conv is bias-free). Frozen layers (conv1a, b2, batch norms) are in none."""
        head = [p for n in self.head_names for p in getattr(self, n).parameters()]
        head_ids = {id(p) for p in head}
        body = [p for p in self.parameters() if p.requires_grad and id(p) not in head_ids]
        return [param_group(body, lr, weight_decay),
                param_group(head, lr, weight_decay, head_mult)]


def affinitynet(width: int = 64, depths: tuple[int, ...] = STAGE_DEPTHS) -> AffinityNet:
    return AffinityNet(width, depths)


def affinitynet_tiny() -> AffinityNet:
    """CPU-sized AffinityNet for the synthetic presets: width 8, one block per stage."""
    return AffinityNet(8, (1, 1, 1, 1))


# psa.network -> constructor; the keys stay string literals: the config check reads them
AFF_NETWORKS = {
    "resnet38d_aff": affinitynet,
    "affinitynet_tiny": affinitynet_tiny,
}
