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
from csdseg.ops.crf import crf_inference_labels


def _thresholded(cams: np.ndarray, thresholds: tuple[float, ...]) -> list[np.ndarray]:
    """IRN's argmax over [threshold; CAMs] for each threshold: local channel, int64 [H, W].

    The same map as padding a constant channel under the CAMs and taking the argmax (a tie
    goes to the threshold channel, listed first), without a padded copy per threshold: the
    CAMs' max and argmax are computed once, and the comparison is made in float32, the dtype
    the padded channel would have had.
    """
    if cams.shape[0] == 0:
        return [np.zeros(cams.shape[1:], np.int64) for _ in thresholds]
    strongest = np.argmax(cams, axis=0) + 1
    peak = np.max(cams, axis=0)
    # NaN: np.argmax calls it the max, so the padded argmax picks it; NaN <= t is False here
    return [np.where(peak <= np.float32(t), 0, strongest) for t in thresholds]


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
    fg_local, bg_local = _thresholded(cams, (fg_threshold, bg_threshold))
    if crf_iters > 0:
        # one CRF's pairwise terms serve both maps (same image, same kernels)
        fg_local, bg_local = crf_inference_labels(img, [fg_local, bg_local],
                                                  n_labels=keys.shape[0], t=crf_iters)
    fg, bg = keys[fg_local], keys[bg_local]
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
