"""The part every CNN CAM classifier shares: four stages, a bias-free 1x1 classifier, IRN's
freezing options, and the CAM contract (csdseg/models/__init__.py).

A family (cam_resnet.py, cam_efficientnet.py) builds ``stage1`` .. ``stage4`` (stage 1 ends at
stride 4, stage 2 at stride 8, stage 4 at the output stride 16), ``classifier``, and optionally
``to_input`` (a fixed input mapping), then calls :meth:`StagedCAM.setup`. Logits are the
classifier on globally average-pooled features, which (the classifier being linear and
bias-free) equals the spatial mean of the class activation maps; we compute the maps once and
pool them.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from csdseg.models.optim_groups import param_group


class StagedCAM(nn.Module):
    feature_stride = 16
    upsample = "strided"  # ceil(H/16) cells, the last overhanging: IRN's resize-then-crop

    stage1: nn.Module
    stage2: nn.Module
    stage3: nn.Module
    stage4: nn.Module
    classifier: nn.Conv2d

    def setup(self, num_classes: int, detach_after: int, frozen_bn: bool,
              stem: list[nn.Module]) -> None:
        """IRN's options: with ``detach_after`` > 0 the ``stem`` modules are frozen and the
        features detached after that stage; ``frozen_bn`` keeps batch norm in eval mode."""
        if detach_after not in (0, 1, 2):
            raise ValueError(f"detach_after must be 0, 1 or 2, got {detach_after}")
        self.detach_after, self.frozen_bn, self.num_classes = detach_after, frozen_bn, num_classes
        if detach_after > 0:  # IRN freezes the stem's convolution and batch norm
            for module in stem:
                for p in module.parameters():
                    p.requires_grad_(False)

    def train(self, mode: bool = True) -> "StagedCAM":
        super().train(mode)
        if self.frozen_bn:  # IRN's FixedBatchNorm: always the running statistics
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] (ImageNet-normalised) -> [B, C, ceil(H/16), ceil(W/16)]."""
        to_input = getattr(self, "to_input", None)
        x = self.stage1(to_input(x) if to_input is not None else x)
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
        # float32: under AMP the logits are float16, whose log-sigmoid keeps ~3 digits
        return F.multilabel_soft_margin_loss(out["logits"].float(), labels)

    def param_groups(self, lr: float, weight_decay: float, head_mult: float) -> list[dict]:
        """The trainable backbone at ``lr``, the classifier at ``lr x head_mult`` (IRN: 10x)."""
        head = list(self.classifier.parameters())
        head_ids = {id(p) for p in head}
        backbone = [p for p in self.parameters() if p.requires_grad and id(p) not in head_ids]
        return [param_group(backbone, lr, weight_decay),
                param_group(head, lr, weight_decay, head_mult)]
