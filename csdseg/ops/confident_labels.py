"""Confident labels from CAMs (IRN's ``cam_to_ir_label``), shared by IRN and CSD.

Each pixel gets one of three verdicts, from two CRF-refined thresholdings of the CAM:

- a *strict* map puts a constant background score ``fg_threshold`` (0.30) under the CAMs, so
  only strongly activated pixels become foreground: those are confident foreground;
- a *lenient* map uses ``bg_threshold`` (0.05), so only pixels no class reaches even weakly
  stay background: those are confident background, where the strict map agrees;
- everything else is uncertain (255): IRN ignores it when learning inter-pixel relations,
  CSD pastes neither as foreground nor as background.

Label values: 0 background, 1..K class index + 1 (the dataset's class order), 255 uncertain.
"""
from __future__ import annotations

import numpy as np

from csdseg.data.classes import IGNORE_INDEX
from csdseg.ops.crf import crf_inference_label


def _crf_thresholded(img: np.ndarray, cams: np.ndarray, keys: np.ndarray, threshold: float,
                     crf_iters: int) -> np.ndarray:
    """Argmax over [threshold; CAMs], CRF-refined, mapped to dataset labels: int [H, W]."""
    scores = np.pad(cams, ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=threshold)
    local = np.argmax(scores, axis=0)
    if crf_iters > 0:
        local = crf_inference_label(img, local, n_labels=keys.shape[0], t=crf_iters)
    return keys[local]


def confident_labels(img: np.ndarray, cam_dict: dict, fg_threshold: float = 0.30,
                     bg_threshold: float = 0.05, crf_iters: int = 10) -> np.ndarray:
    """IRN's confident fg/bg label map for one image.

    img: uint8 [H, W, 3] RGB. cam_dict: make-cam's record, with ``keys`` int [k] (the present
    classes, 0-based) and ``high_res`` float [k, H, W] (CAMs normalised to [0, 1]).
    ``crf_iters=0`` skips both CRFs (plain thresholding). Returns uint8 [H, W].
    """
    if not bg_threshold <= fg_threshold:
        raise ValueError(f"bg_threshold ({bg_threshold}) must not exceed fg_threshold ({fg_threshold})")
    cams = np.asarray(cam_dict["high_res"], dtype=np.float32)
    class_keys = np.asarray(cam_dict["keys"], dtype=np.int64).reshape(-1)
    if cams.ndim != 3 or cams.shape[0] != class_keys.shape[0]:
        raise ValueError(f"high_res must be [k, H, W] with k = len(keys) = {class_keys.shape[0]}, "
                         f"got shape {cams.shape}")
    if img.shape[:2] != cams.shape[1:]:
        raise ValueError(f"image is {img.shape[:2]} but high_res is {cams.shape[1:]}")
    # local channel i -> dataset label: 0 for the background channel, class + 1 otherwise
    keys = np.pad(class_keys + 1, (1, 0), mode="constant")
    fg = _crf_thresholded(img, cams, keys, fg_threshold, crf_iters)
    bg = _crf_thresholded(img, cams, keys, bg_threshold, crf_iters)
    conf = fg.copy()
    conf[fg == 0] = IGNORE_INDEX
    # Background only where both maps say so: a pixel the strict map calls foreground keeps
    # its class even if the (independently CRF-smoothed) lenient map disagrees.
    conf[(fg == 0) & (bg == 0)] = 0
    return conf.astype(np.uint8)


def split_fg_bg(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSD's masks from a confident label map uint8 [H, W]: (foreground, background), bool [H, W].

    Foreground is any class (1..K), background is 0; uncertain pixels (255) are in neither.
    """
    conf = np.asarray(conf)
    bg = conf == 0
    fg = (conf != 0) & (conf != IGNORE_INDEX)
    return fg, bg
