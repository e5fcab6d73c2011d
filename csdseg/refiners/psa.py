"""PSA's random walk (refine.method=psa, PSA's infer_aff.py): needs the trained AffinityNet.

The trained AffinityNet (``checkpoints/aff.pt``, from ``csdseg train-aff``) on the normalised
image zero-padded at the bottom/right to multiples of 8; the full-resolution CAMs with a
background channel in front -- ``psa.walk=psa``: (1 - max)^``psa.alpha`` (PSA 16), ``mct``: a
constant ``psa.bg_threshold`` (MCTformer 0.39) -- averaged over 8 x 8 cells and walked
2^``psa.logt`` steps (PSA 8, MCTformer 6) over the affinities ^ ``psa.beta`` (8); bilinear
back to the padded size, arg-max, cropped (csdseg.ops.psa_walk).

Deviation, for images too small for PSA's pairs (narrower than 72 or lower than 40 px, i.e.
the 64 px test images; never VOC or COCO): the image and the scores are padded further, to
that minimum; the official code would index out of its grid.

torch and the network are imported inside the functions: the registry imports this file, and
asking it ``needs_training`` (the pipeline, the config checks) should not load torch.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from csdseg.files.cam import CamRecord
from csdseg.config import Config, ConfigError, PsaConfig
from csdseg.refiners.base import Refiner
from csdseg.runs import RunDir

LOGT = {"psa": 8, "mct": 6}  # psa.logt=0: the walk's own number of squarings


class Walker(NamedTuple):
    """A run's walks: the trained AffinityNet (eval mode) on its device, and the settings."""

    model: Any  # csdseg.models.affinitynet.AffinityNet
    cfg: PsaConfig
    threads: int  # refine.walk_threads: CPU threads per walk
    device: Any  # torch.device


def check(cfg: Config) -> None:
    p = cfg.psa
    if p.walk not in LOGT:  # also checked at load; a Config built in code skips that check
        raise ConfigError(f"psa.walk must be psa or mct, got '{p.walk}'")
    if p.logt < 0 or p.beta <= 0:
        raise ConfigError(f"psa.logt must be >= 0 and psa.beta > 0, got {p.logt}, {p.beta}")


def prepare(cfg: Config, rd: RunDir) -> Walker:
    from csdseg.device import resolve_device
    from csdseg.engine.checkpoint import load_weights
    from csdseg.models.affinitynet import AFF_NETWORKS

    device = resolve_device(cfg.device)
    model = AFF_NETWORKS[cfg.psa.network]()
    load_weights(model, rd.checkpoint("aff"), expect={"network": cfg.psa.network})
    return Walker(model.to(device).eval(), cfg.psa, cfg.refine.walk_threads, device)


def padded_size(h: int, w: int) -> tuple[int, int]:
    """The image's size rounded up to multiples of 8, at least PSA's smallest grid."""
    from csdseg.ops.psa_affinity import PSA_RADIUS, PSA_STRIDE

    up = lambda n: -(-n // PSA_STRIDE) * PSA_STRIDE  # noqa: E731 - local shorthand
    return (max(up(h), PSA_STRIDE * PSA_RADIUS), max(up(w), PSA_STRIDE * (2 * PSA_RADIUS - 1)))


def refine(state: Walker, record: CamRecord, img: np.ndarray) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    from csdseg.data.transforms import normalize
    from csdseg.ops.psa_walk import psa_walk

    model, p, threads, device = state
    if record.keys.size == 0:  # no class in the image: all background, as PSA's walk gives
        return np.zeros(img.shape[:2], np.uint8)
    h, w = img.shape[:2]
    ph, pw = padded_size(h, w)
    with torch.no_grad():
        x = torch.from_numpy(normalize(img)).to(device)
        aff = model(F.pad(x, (0, pw - w, 0, ph - h))[None])[0]  # zeros after normalising
        background = ({"alpha": p.alpha, "bg_threshold": None} if p.walk == "psa" else
                      {"alpha": None, "bg_threshold": p.bg_threshold})
        labels, _ = psa_walk(torch.from_numpy(record.high_res).to(device), record.keys, aff,
                             beta=p.beta, logt=p.logt or LOGT[p.walk], threads=threads,
                             padded=(ph, pw), **background)
    return labels


REFINER = Refiner(
    name="psa", description="PSA's random walk over the trained AffinityNet's affinities",
    trained_by="train-aff", checkpoint="aff", prepare=prepare, refine=refine, parallel=False,
    settings=("psa.network", "psa.walk", "psa.alpha", "psa.bg_threshold", "psa.beta",
              "psa.logt", "refine.walk_threads"), check=check)
