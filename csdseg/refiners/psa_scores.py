"""PSA's confident-label scores: the two dense-CRF score maps per image that train-aff crops.

For every training image, the CRF marginals of [(1 - max CAM)^alpha; CAMs] at
``psa.low_alpha`` and ``psa.high_alpha`` (csdseg.ops.psa_affinity.crf_scores, PSA's
infer_cls). They are kept as scores, not arg-maxed labels: PSA crops them with the image,
averages 8 x 8 blocks and only then takes the arg-max (csdseg.ops.psa_affinity.pair_labels),
so a label map made beforehand would give other targets.

Storage: ``runs/<name>/psa_scores/<id>.npz`` (``np.savez_compressed``) holding ``low`` and
``high`` float16 [1 + K', H, W] (channel 0 background, then the CAM file's classes in its
order) and ``keys`` int64 [K']. float16 keeps 11 significant bits (relative error <= 2^-11),
far below what moves an 8 x 8 block mean's arg-max, at a quarter of PSA's float32 and
smaller still compressed (CRF marginals are mostly near 0 or 1). Writes are atomic and
existing files are kept, so an interrupted train-aff resumes the scores where it stopped.
Each image costs two 10-iteration CRFs on one core; ``ir_label.num_workers`` processes share them.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from csdseg.files.cam import load_cam
from csdseg.data import Source
from csdseg.errors import StageError
from csdseg.files.atomic import atomic_write_bytes
from csdseg.ops.parallel import map_ids
from csdseg.runs import MissingInputError, RunDir

log = logging.getLogger("csdseg.psa_scores")  # its name before the move: log lines unchanged
FOLDER = "psa_scores"


def score_dir(rd: RunDir) -> Path:
    return rd.root / FOLDER


def save_scores(path: Path, low: np.ndarray, high: np.ndarray, keys: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, low=low.astype(np.float16), high=high.astype(np.float16),
                        keys=np.asarray(keys, np.int64))
    atomic_write_bytes(path, buffer.getvalue())


def load_scores(path: Path, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) float32 [1 + K', H, W] of one image of ``size``; StageError naming the file
    and the fix when it is unreadable or made for another image."""
    fix = "delete it and rerun `csdseg train-aff` (it remakes only the missing score files)"
    try:
        with np.load(path) as z:
            low, high = z["low"].astype(np.float32), z["high"].astype(np.float32)
    except Exception as exc:  # noqa: BLE001 - truncated or foreign files get one message
        raise StageError(f"{path} is not a PSA score file ({exc}); {fix}") from None
    if low.shape != high.shape or low.ndim != 3 or low.shape[1:] != tuple(size):
        raise StageError(f"{path} holds scores {low.shape} / {high.shape} for an image of "
                         f"{tuple(size)}: made from other CAMs or images; {fix}")
    return low, high


class ScoreJob:
    """One image's two score maps, written to ``out_dir``; picklable for :func:`map_ids`."""

    def __init__(self, source: Source, cam_dir: Path, out_dir: Path, low_alpha: float,
                 high_alpha: float) -> None:
        self.source, self.cam_dir, self.out_dir = source, cam_dir, out_dir
        self.low_alpha, self.high_alpha = low_alpha, high_alpha

    def __call__(self, image_id: str) -> None:
        from csdseg.ops.psa_affinity import crf_scores

        cam_path = self.cam_dir / f"{image_id}.npy"
        record = load_cam(cam_path, self.source.num_classes)
        img = self.source.load_image(image_id)
        if record.size != img.shape[:2]:
            raise StageError(f"{cam_path} is {record.size} but its image is {img.shape[:2]}; "
                             "the CAMs were made for other images: rerun `csdseg make-cam`")
        cams = np.clip(record.high_res, 0, 1)  # (1 - max)^alpha needs maps in [0, 1]
        if cams.shape[0] == 0:  # no class: all background at both alphas (a 1-label CRF)
            low = high = np.ones((1,) + img.shape[:2], np.float32)
        else:
            low = crf_scores(img, cams, self.low_alpha)
            high = crf_scores(img, cams, self.high_alpha)
        save_scores(self.out_dir / f"{image_id}.npz", low, high, record.keys)


def make_scores(source: Source, ids: Sequence[str], cam_dir: Path, out_dir: Path,
                low_alpha: float, high_alpha: float, workers: int) -> int:
    """The score files of ``ids`` not yet in ``out_dir``; returns how many were made."""
    todo = [i for i in ids if not (out_dir / f"{i}.npz").exists()]
    missing = [i for i in todo if not (cam_dir / f"{i}.npy").is_file()]
    if missing:
        raise MissingInputError(
            f"{len(missing)} CAM files of the training images are missing from {cam_dir}, e.g. "
            f"{missing[0]}.npy; train-aff needs CAMs of data.train_split: run `csdseg make-cam` "
            "with data.infer_split covering it")
    log.info("%d PSA score files to make in %s, %d already there", len(todo), out_dir,
             len(ids) - len(todo))
    if todo:
        out_dir.mkdir(parents=True, exist_ok=True)
        job = ScoreJob(source, cam_dir, out_dir, low_alpha, high_alpha)
        map_ids(job, todo, workers=workers, desc="train-aff scores")
    return len(todo)
