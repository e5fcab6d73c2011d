"""What the config's sections share: the annotations that declare allowed values, and the two
groups of settings every training stage has (its loop, and IRN's / DeepLab's / PSA's SGD with
polynomial decay), each field declared once and inherited by the sections that train.

A section states only the defaults in which its official recipe differs (``SegConfig`` trains
20 epochs at lr 2.5e-4, momentum 0.9); what a field means is written here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Registry(NamedTuple):
    """The allowed values are the keys of the dict (or the items of the tuple) ``module.name``."""

    module: str
    name: str


class Pattern(NamedTuple):
    """The allowed values match ``regex`` (case-insensitive); ``text`` lists them for humans."""

    regex: str
    text: str


@dataclass
class TrainLoop:
    """The loop every training stage runs (csdseg/engine/loop.py): how long, on what crops."""

    epochs: int = 5
    batch_size: int = 16
    crop_size: int = 512
    hflip: bool = True
    max_steps: int = 0  # 0 = no limit; a cap for smoke tests
    log_every: int = 20  # steps between log lines
    save_every: int = 200  # steps between resumable checkpoints (and at every epoch end)


@dataclass
class SgdPoly:
    """SGD with polynomial decay ``lr * (1 - step / total) ** poly_power`` (IRN, DeepLab, PSA;
    csdseg/engine/schedule.py)."""

    lr: float = 0.1
    weight_decay: float = 1e-4
    # IRN's and PSA's PolyOptimizer pass weight decay positionally into the momentum slot of
    # torch.optim.SGD, so their official recipes train with momentum = weight decay (1e-4,
    # 5e-4). Kept for fidelity; 0.9 (DeepLab's) is the usual choice.
    momentum: float = 1e-4
    poly_power: float = 0.9
