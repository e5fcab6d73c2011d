"""IRN's random walk (refine.method=rw, IRN's make_sem_seg_labels): needs the trained IRN.

The boundary map of the trained IRN (``checkpoints/irn.pt``, from ``csdseg train-irn``) on the
image and its mirror, each zero-padded to ``irn.crop_size`` as the official code does
(IRNet.edge_displacement); the stride-4 CAMs walked 2^exp_times steps over affinities within
``refine.walk_radius`` (``refine.beta`` 10), upsampled, max-normalised, against a constant
background of ``refine.bg_threshold``.

torch and the network are imported inside the functions: the registry imports this file, and
asking it ``needs_training`` (the pipeline, the config checks) should not load torch.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from csdseg.files.cam import CamRecord
from csdseg.config import Config, RefineConfig
from csdseg.refiners.base import Refiner
from csdseg.runs import RunDir


class Walker(NamedTuple):
    """The state of a run's walks: the trained IRN (eval mode) on its device, the crop it pads
    images to (irn.crop_size) and the walk's settings."""

    model: Any  # csdseg.models.irn.IRNet
    crop_size: int
    walk: RefineConfig
    device: Any  # torch.device


def prepare(cfg: Config, rd: RunDir) -> Walker:
    from csdseg.device import resolve_device
    from csdseg.engine.checkpoint import load_weights
    from csdseg.models.irn import IRNet

    c = cfg.irn
    device = resolve_device(cfg.device)
    model = IRNet(c.backbone, "none")
    load_weights(model, rd.checkpoint("irn"), expect={"backbone": c.backbone})
    return Walker(model.to(device).eval(), c.crop_size, cfg.refine, device)


def refine(state: Walker, record: CamRecord, img: np.ndarray) -> np.ndarray:
    import torch

    from csdseg.data.transforms import normalize
    from csdseg.ops.random_walk import random_walk, walk_to_labels

    model, crop_size, c, device = state
    if record.keys.size == 0:  # no class in the image: all background, as IRN
        return np.zeros(img.shape[:2], np.uint8)
    with torch.no_grad():
        boundary = model.infer_boundary(torch.from_numpy(normalize(img)).to(device), crop_size)
        cams = torch.from_numpy(record.cam).to(device)
        if cams.shape[1:] != boundary.shape:  # the network's stride, not the file, would be off
            raise ValueError(f"the boundary map is {tuple(boundary.shape)} but the stride-4 CAMs "
                             f"are {tuple(cams.shape[1:])}")
        rw = random_walk(cams, boundary, c.beta, c.exp_times, c.walk_radius, c.walk_threads)
        return walk_to_labels(rw, record.keys, img.shape[:2], c.bg_threshold)


REFINER = Refiner(
    name="rw", description="IRN's random walk over the trained IRN's boundary map",
    trained_by="train-irn", checkpoint="irn", prepare=prepare, refine=refine, parallel=False,
    settings=("irn.backbone", "irn.crop_size", "refine.beta", "refine.exp_times",
              "refine.walk_radius", "refine.walk_threads", "refine.bg_threshold"))
