"""Shared fixtures: a tiny synthetic dataset and a config for tiny CPU runs on it."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from csdseg.config import Config, load_config


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """32 train + 8 val synthetic images at 64 px (VOC layout), made once per session."""
    from csdseg.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("synth") / "data", n_train=32, n_val=8, size=64,
                    seed=0, workers=1)


def tiny_config(root: Path, run_root: Path, *overrides: str) -> Config:
    """The synthetic preset shrunk to seconds: resnet10t, 64 px crops, a few steps."""
    preset = Path(__file__).resolve().parents[1] / "csdseg/config/presets/synthetic_irn.yaml"
    return load_config(preset, [
        f"data.root={root}", f"run_root={run_root}", "device=cpu", "data.num_workers=0",
        "train.crop_size=64", "train.resize_long=[48,80]", "train.batch_size=8",
        "train.epochs=1", "cam.scales=[1.0,0.5]", *overrides,
    ])


@pytest.fixture
def one_thread():
    """Tiny models on a shared CPU: one thread is faster and avoids OpenMP spinning."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
