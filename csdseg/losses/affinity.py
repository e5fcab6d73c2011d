"""IRN's training losses (step/train_irn.py) on pairs within the path radius.

With affinity a = 1 - max boundary along a pair's path ([B, D, Ns]) and confident-label masks
bg_pos / fg_pos / neg ([B, D, Ns], from :func:`csdseg.ops.affinity.affinity_labels`):

- positive pairs: -log(a) averaged separately over background and foreground pairs, halved;
- negative pairs: -log(1 - a);
- displacement: for a foreground pair the difference of the two predicted displacements must
  equal the pair's offset (L1); for a background pair it must be zero.

Total = (pos + neg) / 2 + (dp_fg + dp_bg) / 2. Every mean is a masked sum over (count + 1e-5).
"""
from __future__ import annotations

import torch

EPS = 1e-5


def pair_displacement(dp: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """dp [B, 2, h, w]; src [Ns], dst [D, Ns] flat indices -> dp(src) - dp(dst) [B, 2, D, Ns]."""
    flat = dp.flatten(2)
    return flat[:, :, src][:, :, None] - flat[:, :, dst]


def _masked_mean(values: torch.Tensor, mask: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    return torch.sum(values * mask) / (scale * torch.sum(mask) + EPS)


def irn_losses(aff: torch.Tensor, disp: torch.Tensor, offsets: torch.Tensor,
               bg_pos: torch.Tensor, fg_pos: torch.Tensor, neg: torch.Tensor
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """aff [B, D, Ns]; disp [B, 2, D, Ns] (:func:`pair_displacement`); offsets [D, 2] (dy, dx)
    per direction; masks [B, D, Ns]. Returns the total loss and its four terms as floats."""
    pos_bg = _masked_mean(-torch.log(aff + EPS), bg_pos)
    pos_fg = _masked_mean(-torch.log(aff + EPS), fg_pos)
    pos = pos_bg / 2 + pos_fg / 2
    neg_loss = _masked_mean(-torch.log(1.0 + EPS - aff), neg)
    target = offsets.T.to(disp.dtype)[None, :, :, None]  # [1, 2, D, 1]
    # the mask broadcasts over (dy, dx), so the count is doubled to average per component
    dp_fg = _masked_mean(torch.abs(disp - target), fg_pos[:, None], scale=2.0)
    dp_bg = _masked_mean(torch.abs(disp), bg_pos[:, None], scale=2.0)
    total = (pos + neg_loss) / 2 + (dp_fg + dp_bg) / 2
    return total, {"pos_aff": pos.item(), "neg_aff": neg_loss.item(),
                   "dp_fg": dp_fg.item(), "dp_bg": dp_bg.item()}
