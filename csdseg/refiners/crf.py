"""CAM + dense CRF (refine.method=crf): no training, only the CAMs and the image.

The full-resolution CAMs with a constant background score ``refine.crf_bg_threshold``, normalised
to probabilities and refined by a dense CRF with the ``refine.crf_preset`` settings (DeepLab-v2's
by default); the label of a pixel is the CRF's argmax.
"""
from __future__ import annotations

import numpy as np

from csdseg.files.cam import CamRecord
from csdseg.config import Config, ConfigError, RefineConfig
from csdseg.ops.crf import SOFTMAX_PRESETS, crf_inference_softmax
from csdseg.refiners.base import Refiner
from csdseg.runs import RunDir


def check(cfg: Config) -> None:
    # also checked at load; a Config built in code (tests, notebooks) skips that check
    if cfg.refine.crf_preset not in SOFTMAX_PRESETS:
        raise ConfigError(f"refine.crf_preset must be one of {', '.join(SOFTMAX_PRESETS)}, "
                          f"got '{cfg.refine.crf_preset}'")


def prepare(cfg: Config, rd: RunDir) -> RefineConfig:
    return cfg.refine  # the settings are the whole state: a dataclass, so it pickles to workers


def refine(c: RefineConfig, record: CamRecord, img: np.ndarray) -> np.ndarray:
    scores = np.concatenate([np.full((1,) + img.shape[:2], c.crf_bg_threshold, np.float32),
                             np.clip(record.high_res, 0, None)])
    probs = scores / scores.sum(axis=0, keepdims=True)
    pred = crf_inference_softmax(img, probs, **SOFTMAX_PRESETS[c.crf_preset]).argmax(0)
    lut = np.concatenate([[0], record.keys + 1])  # channel 0 is background, then the keys
    return lut[pred].astype(np.uint8)


REFINER = Refiner(
    name="crf", description="CAMs + a constant background score, refined by a dense CRF",
    trained_by=None, checkpoint=None, prepare=prepare, refine=refine, parallel=True,
    settings=("refine.crf_preset", "refine.crf_bg_threshold"), check=check)
