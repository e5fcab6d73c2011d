"""Optimiser parameter groups in the one shape every model's ``param_groups`` returns.

Every model in csdseg has ``param_groups(lr, weight_decay, head_mult) -> list[dict]``; each
group carries ``lr`` (the starting rate), ``lr_mult`` (its ratio to the base rate, which the
schedule keeps: csdseg/engine/schedule.py ``set_lr``) and ``weight_decay``.
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn


def param_group(params: list[nn.Parameter], lr: float, weight_decay: float,
                lr_mult: float = 1.0) -> dict[str, Any]:
    return {"params": params, "lr": lr * lr_mult, "lr_mult": lr_mult,
            "weight_decay": weight_decay}


def split_param_groups(backbone: nn.Module, head: nn.Module, lr: float, weight_decay: float,
                       head_mult: float) -> list[dict[str, Any]]:
    """The trainable backbone parameters at ``lr``, the head's at ``lr x head_mult``; a group
    left empty (a frozen backbone) is dropped, as torch refuses empty groups."""
    groups = [param_group([p for p in backbone.parameters() if p.requires_grad], lr,
                          weight_decay),
              param_group([p for p in head.parameters() if p.requires_grad], lr, weight_decay,
                          head_mult)]
    return [g for g in groups if g["params"]]
