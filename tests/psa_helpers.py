"""Shared by the PSA stage tests: a tiny PSA config and CAMs that need no classifier.

The CAMs are blurred ground-truth masks of the synthetic images (one map per present class),
so train-aff and the psa refiner can be tested in seconds without train-cam and make-cam.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import tiny_config
from csdseg.files.cam import save_cam
from csdseg.config import Config
from csdseg.data import build_source
from csdseg.runs import RunDir

# 8 val images, batch 2: 4 steps an epoch; crop 72, the smallest PSA's pairs allow
PSA = ["refine.method=psa", "psa.network=affinitynet_tiny", "psa.crop_size=72",
       "psa.batch_size=2", "psa.epochs=2", "psa.lr=0.01", "data.train_split=val",
       "data.infer_split=val", "ir_label.num_workers=1"]


def psa_config(root: Path, runs: Path, *extra: str) -> Config:
    return tiny_config(root, runs, *PSA, *extra)


def fake_cams(cfg: Config) -> None:
    """Every infer_split image's CAM file from its mask: 0.9 on the class, 0.1 elsewhere,
    box-blurred so the maps have soft edges as real CAMs do."""
    source = build_source(cfg.data, cfg.data.infer_split)
    folder = RunDir.from_config(cfg).cam_dir
    folder.mkdir(parents=True, exist_ok=True)
    for image_id in source.ids:
        mask = source.load_mask(image_id)
        keys = np.array([c - 1 for c in np.unique(mask) if 0 < c < 255], np.int64)
        maps = np.stack([np.where(mask == k + 1, 0.9, 0.1) for k in keys]).astype(np.float32) \
            if keys.size else np.zeros((0,) + mask.shape, np.float32)
        k = 5
        pad = np.pad(maps, ((0, 0), (k // 2, k // 2), (k // 2, k // 2)), mode="edge")
        blurred = sum(pad[:, i:i + mask.shape[0], j:j + mask.shape[1]]
                      for i in range(k) for j in range(k)) / k ** 2
        save_cam(folder / f"{image_id}.npy", keys, blurred[:, ::4, ::4], blurred)
