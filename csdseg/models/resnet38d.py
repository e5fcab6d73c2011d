"""PSA's wide ResNet-38 (``resnet38d``) and its AffinityNet head (Ahn & Kwak, CVPR 2018).

The backbone is Wu et al.'s "wider or deeper" ResNet-38 (model A1), pre-activation residual
blocks, as defined in jiwoon-ahn/psa ``network/resnet38d.py``; the parameter names are the
official ones (``conv1a``, ``b2`` .. ``b7``, ``bn_branch2a``, ``conv_branch1``, ``bn7``), so the
official PyTorch weights (``res38_cls.pth``, an AffinityNet checkpoint, or the converted
ImageNet ``.params``; docs/method.md) load by name.

Layout at ``width`` w (official w = 64), input [B, 3, H, W]:

| blocks | kind | in -> mid -> out | stride / dilation | output |
|---|---|---|---|---|
| conv1a | 3x3 conv | 3 -> w | 1 | H |
| b2, b2_1, b2_2 | basic | w -> 2w -> 2w | 2 | H/2 |
| b3, b3_1, b3_2 | basic | 2w -> 4w -> 4w | 2 | H/4 |
| b4, b4_1 .. b4_5 | basic | 4w -> 8w -> 8w | 2 | H/8 |
| b5, b5_1, b5_2 | basic | 8w -> 8w -> 16w | 1, dilation 2 (b5's first conv 1) | H/8 |
| b6 | bottleneck | 16w -> 8w, 16w -> 32w | 1, dilation 4, dropout 0.3 | H/8 |
| b7 | bottleneck | 32w -> 16w, 32w -> 64w | 1, dilation 4, dropout 0.5 | H/8 |
| bn7 + ReLU | | 64w | | ``conv6`` |

A basic block is BN-ReLU, 3x3 conv (stride, first dilation), BN-ReLU, 3x3 conv (dilation);
its shortcut is a strided 1x1 conv of the *activated* input where the shape changes. A
bottleneck is BN-ReLU, 1x1 (stride) to out/4, BN-ReLU-dropout, 3x3 to out/2, BN-ReLU-dropout,
1x1 to out, with the 1x1 shortcut. Sizes are ceil(H/8) x ceil(W/8) (padded convs). The
features AffinityNet reads: ``conv4`` (b5's activated input, 8w), ``conv5`` (b6's activated
input, 16w) and ``conv6`` (64w).

Training as PSA: every batch norm stays in eval mode with its scale and shift frozen, and the
weights of conv1a and the b2 stage are frozen (``Net.train`` / ``not_training`` in the
official code).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from csdseg.models.pretrained import read_state_dict

STAGE_DEPTHS = (3, 3, 6, 3)  # basic blocks in stages 2..5 (official)


class BasicBlock(nn.Module):
    """PSA's ``ResBlock``: [B, cin, H, W] -> [B, cout, H/stride, W/stride]."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int = 1,
                 first_dilation: int | None = None, dilation: int = 1) -> None:
        super().__init__()
        first = dilation if first_dilation is None else first_dilation
        self.same_shape = cin == cout and stride == 1
        self.bn_branch2a = nn.BatchNorm2d(cin)
        self.conv_branch2a = nn.Conv2d(cin, mid, 3, stride, padding=first, dilation=first,
                                       bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(mid)
        self.conv_branch2b1 = nn.Conv2d(mid, cout, 3, padding=dilation, dilation=dilation,
                                        bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (output, the activated input BN-ReLU(x)): AffinityNet reads the latter."""
        act = F.relu(self.bn_branch2a(x))
        shortcut = x if self.same_shape else self.conv_branch1(act)
        y = self.conv_branch2b1(F.relu(self.bn_branch2b1(self.conv_branch2a(act))))
        return shortcut + y, act


class BottleneckBlock(nn.Module):
    """PSA's ``ResBlock_bot``: [B, cin, H, W] -> [B, cout, H/stride, W/stride]."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.bn_branch2a = nn.BatchNorm2d(cin)
        self.conv_branch2a = nn.Conv2d(cin, cout // 4, 1, stride, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(cout // 4)
        self.dropout_2b1 = nn.Dropout2d(dropout)
        self.conv_branch2b1 = nn.Conv2d(cout // 4, cout // 2, 3, padding=dilation,
                                        dilation=dilation, bias=False)
        self.bn_branch2b2 = nn.BatchNorm2d(cout // 2)
        self.dropout_2b2 = nn.Dropout2d(dropout)
        self.conv_branch2b2 = nn.Conv2d(cout // 2, cout, 1, bias=False)
        # the official block always has the projection (b6 and b7 change the width)
        self.conv_branch1 = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        act = F.relu(self.bn_branch2a(x))
        y = self.dropout_2b1(F.relu(self.bn_branch2b1(self.conv_branch2a(act))))
        y = self.dropout_2b2(F.relu(self.bn_branch2b2(self.conv_branch2b1(y))))
        return self.conv_branch1(act) + self.conv_branch2b2(y), act


def _block_names(stage: int, n: int) -> list[str]:
    return [f"b{stage}"] + [f"b{stage}_{i}" for i in range(1, n)]


class ResNet38d(nn.Module):
    """The backbone. ``width`` scales every layer (64 = official; 8 is a CPU-sized variant),
    ``depths`` the basic blocks of stages 2-5 (official (3, 3, 6, 3))."""

    feature_stride = 8

    def __init__(self, width: int = 64, depths: tuple[int, ...] = STAGE_DEPTHS) -> None:
        super().__init__()
        if width < 4 or width % 4:
            raise ValueError(f"width must be a positive multiple of 4, got {width}")
        if len(depths) != 4 or min(depths) < 1:
            raise ValueError(f"depths must be 4 block counts >= 1, got {depths}")
        w = width
        self.width, self.depths = w, tuple(depths)
        self.conv1a = nn.Conv2d(3, w, 3, padding=1, bias=False)
        # (stage, cin, mid, cout, stride, first dilation, dilation)
        plan = [(2, w, 2 * w, 2 * w, 2, 1, 1), (3, 2 * w, 4 * w, 4 * w, 2, 1, 1),
                (4, 4 * w, 8 * w, 8 * w, 2, 1, 1), (5, 8 * w, 8 * w, 16 * w, 1, 1, 2)]
        self.block_order: list[str] = []
        for (stage, cin, mid, cout, stride, first, dil), n in zip(plan, depths):
            for i, name in enumerate(_block_names(stage, n)):
                block = (BasicBlock(cin, mid, cout, stride, first, dil) if i == 0
                         else BasicBlock(cout, mid, cout, dilation=dil))
                setattr(self, name, block)
                self.block_order.append(name)
        self.b6 = BottleneckBlock(16 * w, 32 * w, dilation=4, dropout=0.3)
        self.b7 = BottleneckBlock(32 * w, 64 * w, dilation=4, dropout=0.5)
        self.bn7 = nn.BatchNorm2d(64 * w)
        # PSA freezes conv1a and the stride-2 stage b2 (its ``not_training``)
        self.frozen_prefixes = ("conv1a.",) + tuple(n + "." for n in _block_names(2, depths[0]))
        for name, p in self.named_parameters():
            if name.startswith(self.frozen_prefixes):
                p.requires_grad_(False)
        for m in self.modules():  # PSA trains no batch-norm parameter
            if isinstance(m, nn.BatchNorm2d):
                for p in m.parameters():
                    p.requires_grad_(False)

    @property
    def channels(self) -> tuple[int, int, int]:
        """Channels of (conv4, conv5, conv6)."""
        return 8 * self.width, 16 * self.width, 64 * self.width

    def train(self, mode: bool = True) -> "ResNet38d":
        super().train(mode)
        for m in self.modules():  # batch norms always use their running statistics
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """[B, 3, H, W] (ImageNet-normalised) -> ``conv4`` [B, 8w, h, w], ``conv5`` [B, 16w,
        h, w], ``conv6`` [B, 64w, h, w], h = ceil(H/8)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(x.shape)}")
        x = self.conv1a(x)
        conv4 = None
        for name in self.block_order:
            x, act = getattr(self, name)(x)
            if name == "b5":
                conv4 = act
        x, conv5 = self.b6(x)
        x, _ = self.b7(x)
        return {"conv4": conv4, "conv5": conv5, "conv6": F.relu(self.bn7(x))}


_MX_BN = {"beta": "bias", "gamma": "weight", "mean": "running_mean", "var": "running_var"}


def mxnet_param_name(key: str) -> str | None:
    """The PyTorch name of a tensor of the MXNet ResNet-38 ImageNet weights
    (``ilsvrc-cls_rna-a1_cls1000_ep-0001.params``), by the official converter's rule
    (``convert_mxnet_to_torch``); None for the 1000-class classifier. E.g. ``res4b5_branch2b1
    _weight`` -> ``b4_5.conv_branch2b1.weight``, ``bn2a_branch1_moving_var`` -> ... (docs/method.md)."""
    name = key.split(":", 1)[-1]  # MXNet's arg:/aux: prefixes
    toks = name.split("_")
    if "conv1a" in toks[0]:
        return "conv1a.weight"
    if "linear1000" in toks[0]:
        return None
    if len(toks) > 1 and "branch" in toks[1]:
        unit = toks[0]
        block = f"b{unit[-2]}" if unit[-1] == "a" else f"b{unit[-3]}_{unit[-1]}"
        if "res" in unit:
            return f"{block}.conv_{toks[1]}.weight"
        return f"{block}.bn_{toks[1]}.{_MX_BN[toks[-1]]}"
    return f"bn7.{_MX_BN[toks[-1]]}"


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A torch state dict, or an ``.npz`` of the MXNet arrays under their MXNet names (saved
    with ``mxnet.nd.load`` + ``numpy.savez``), renamed."""
    if path.suffix != ".npz":
        return read_state_dict(path)
    import numpy as np

    with np.load(path) as z:
        named = {mxnet_param_name(k): torch.from_numpy(z[k]) for k in z.files}
    return {k: v for k, v in named.items() if k is not None}


def load_psa_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Load a state dict with the official names (``res38_cls.pth``, an AffinityNet
    checkpoint, the converted ImageNet weights) into ``model``.

    ``.npz``: the MXNet ImageNet arrays under their own names (:func:`mxnet_param_name`).
    Every backbone tensor must be in the file with the model's shape; head tensors
    (``f8_*``, ``f9``, ``fc8``) may be absent (they start from their initialisation, as
    in PSA's non-strict load) and file tensors the model has no place for (a classifier's
    ``fc8``, the ImageNet ``linear1000``) are ignored. Returns the keys left at their
    initialisation. Raises ValueError naming the first offending tensor.
    """
    state = _read_weights(Path(path))
    own = model.state_dict()
    head = ("f8_", "f9.", "fc8.")
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    backbone_missing = [k for k in missing if not k.startswith(head)]
    if backbone_missing:
        raise ValueError(f"weights file {path} lacks {len(backbone_missing)} backbone tensors "
                         f"(e.g. {backbone_missing[0]!r}): not PSA ResNet-38 weights of this "
                         f"width ({getattr(model, 'width', '?')})")
    for k, v in state.items():
        if k in own and own[k].shape != v.shape:
            raise ValueError(f"weights file {path}: {k!r} is {tuple(v.shape)}, the model's "
                             f"{tuple(own[k].shape)}: another width or head size")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return missing
