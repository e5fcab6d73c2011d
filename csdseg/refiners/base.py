"""The shape of one pseudo-mask refiner: what it is, what it needs, and how it maps CAMs to labels.

make-sem-seg knows refiners only through this entry: it checks the settings, requires the
checkpoint of the training stage the refiner names, calls ``prepare`` once, then ``refine`` on
every image, and writes the label PNGs itself (csdseg.files.labels).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from csdseg.files.cam import CamRecord
from csdseg.config import Config
from csdseg.runs import RunDir


def no_check(cfg: Config) -> None:
    """For refiners whose settings are all checked when the config loads."""


@dataclass(frozen=True)
class Refiner:
    name: str  # the value of refine.method that picks it
    description: str  # one line, for help texts and docs
    # The stage that trains what it needs (e.g. "train-irn"), and the checkpoint name it writes
    # (``runs/<name>/checkpoints/<checkpoint>.pt``); both None when nothing is trained.
    trained_by: str | None
    checkpoint: str | None
    # (cfg, run) -> state, once per run after the inputs are checked: a loaded model, or the
    # settings themselves. ``refine(state, record, image)`` -> uint8 [H, W] of 0 (background),
    # 1..K (class index + 1): record is the image's CAM file (its size already checked against
    # the image), image the RGB uint8 [H, W, 3].
    prepare: Callable[[Config, RunDir], Any]
    refine: Callable[[Any, CamRecord, np.ndarray], np.ndarray]
    # True: images are spread over ``ir_label.num_workers`` processes, so the state must pickle
    # (CPU work); False: one process, e.g. a network on one device.
    parallel: bool
    settings: tuple[str, ...] = ()  # the config keys its masks depend on (refine.method aside)
    check: Callable[[Config], None] = no_check  # ConfigError before any work, if a setting is bad

    def __post_init__(self) -> None:
        if (self.trained_by is None) != (self.checkpoint is None):
            raise ValueError(f"refiner {self.name}: trained_by and checkpoint go together")
