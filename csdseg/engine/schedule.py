"""Learning-rate schedules, as pure functions of the step (so a resumed run recomputes them)."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch


class SgdPolySettings(Protocol):
    """What :func:`sgd_poly` reads: csdseg.config.common.SgdPoly, or anything with its fields."""

    lr: float
    momentum: float
    poly_power: float


def poly_lr(base_lr: float, step: int, total_steps: int, power: float = 0.9) -> float:
    """IRN/DeepLab polynomial decay: ``base_lr * (1 - step / total_steps) ** power``."""
    if total_steps <= 0:
        return base_lr
    return base_lr * (1.0 - min(step, total_steps) / total_steps) ** power


def sgd(groups: list[dict[str, Any]], s: SgdPolySettings) -> torch.optim.SGD:
    """SGD over a model's ``param_groups`` (each group carries its own rate ratio and weight
    decay): the optimiser train-cam (optim.name=sgd), train-irn, train-aff and train-seg share."""
    return torch.optim.SGD(groups, lr=s.lr, momentum=s.momentum)


def poly_schedule(s: SgdPolySettings) -> Callable[[int, int], float]:
    """``lr_at(step, total)`` of the poly decay from ``s.lr`` with ``s.poly_power``."""
    return lambda step, total: poly_lr(s.lr, step, total, s.poly_power)


def warmup_cosine_lr(base_lr: float, step: int, total_steps: int, warmup_steps: int,
                     min_lr: float = 1e-6, warmup_lr: float = 1e-6) -> float:
    """Linear warm-up then cosine decay to ``min_lr`` (DeiT/MCTformer style)."""
    if step < warmup_steps:
        return warmup_lr + (base_lr - warmup_lr) * step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's lr to ``lr * group['lr_mult']`` (the 10x head groups keep their ratio)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
