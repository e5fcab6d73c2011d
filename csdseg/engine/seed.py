"""Reproducibility: one seed drives Python, NumPy and torch (and each data-loader worker)."""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed every generator; return a torch.Generator for samplers that must not share state."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def worker_init(worker_id: int) -> None:
    """DataLoader hook: give each worker its own NumPy/random stream derived from torch's seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
