"""make-ir-label: CAMs -> confident labels (IRN's cam_to_ir_label).

Reads ``runs/<name>/cam/<id>.npy`` (from ``csdseg make-cam``) for every image of
``data.infer_split`` and writes ``runs/<name>/ir_label/<id>.png``: a palette PNG whose pixel
values are 0 (confident background), 1..K (confident class) and 255 (uncertain). Each image
costs two dense CRFs, run on ``ir_label.workers`` processes (0 = one per core). Existing
outputs are kept, so an interrupted run resumes where it stopped.

Settings (``ir_label.*``): fg_threshold 0.30 and bg_threshold 0.05 (IRN's conf_fg_thres and
conf_bg_thres), crf_iters 10.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from csdseg.cam_file import load_cam
from csdseg.config import Config, ConfigError, IrLabelConfig
from csdseg.data import Source, build_source
from csdseg.errors import StageError
from csdseg.io import atomic_save_png
from csdseg.ops.confident_labels import confident_labels
from csdseg.ops.parallel import map_ids
from csdseg.runs import MissingInputError, RunDir
from csdseg.visualize import palette_png

HELP = "CAMs -> confident fg/bg/uncertain labels with two dense CRFs (IRN's cam_to_ir_label)"
STAGE = "make-ir-label"
log = logging.getLogger(__name__)


def save_label_png(path: str | Path, label: np.ndarray) -> None:
    """Write a label map uint8 [H, W] as a VOC-palette PNG (reads back as the same indices)."""
    atomic_save_png(path, palette_png(label))


class IrLabelJob:
    """One image's work, picklable so :func:`map_ids` can ship it to worker processes."""

    def __init__(self, source: Source, cam_dir: Path, out_dir: Path, cfg: IrLabelConfig) -> None:
        self.source = source
        self.cam_dir = cam_dir
        self.out_dir = out_dir
        self.cfg = cfg

    def __call__(self, image_id: str) -> None:
        cam_path = self.cam_dir / f"{image_id}.npy"
        record = load_cam(cam_path, self.source.num_classes)
        img = self.source.load_image(image_id)
        if record.size != img.shape[:2]:
            raise StageError(
                f"{cam_path} is {record.size} but the image is {img.shape[:2]}; the CAMs "
                "were made for other images: rerun `csdseg make-cam` with this data.root"
            )
        conf = confident_labels(img, record.as_dict(), fg_threshold=self.cfg.fg_threshold,
                                bg_threshold=self.cfg.bg_threshold, crf_iters=self.cfg.crf_iters)
        save_label_png(self.out_dir / f"{image_id}.png", conf)


def make_labels(cfg: Config, cam_dir: Path, out_dir: Path, split: str) -> int:
    """Confident labels of ``cam_dir``'s CAMs for every id of ``split`` into ``out_dir``
    (existing files kept); returns how many were made. make-ir-label writes its own run's
    ``ir_label/``; make-csd-masks a CSD run's ``csd_masks/`` from its baseline's CAMs."""
    if not 0 <= cfg.ir_label.bg_threshold <= cfg.ir_label.fg_threshold:
        raise ConfigError(f"ir_label.bg_threshold ({cfg.ir_label.bg_threshold}) must lie in "
                         f"[0, ir_label.fg_threshold ({cfg.ir_label.fg_threshold})]")
    source = build_source(cfg.data, split)
    todo = [i for i in source.ids if not (out_dir / f"{i}.png").exists()]
    missing = [i for i in todo if not (cam_dir / f"{i}.npy").is_file()]
    if missing:
        raise MissingInputError(
            f"{len(missing)} of {len(source.ids)} CAM files of split '{split}' are "
            f"missing from {cam_dir}, e.g. {missing[0]}.npy; run `csdseg make-cam` first "
            "with the same data.infer_split"
        )
    log.info("%d confident label maps to make in %s, %d already done", len(todo), out_dir,
             len(source.ids) - len(todo))
    if todo:
        out_dir.mkdir(parents=True, exist_ok=True)
        job = IrLabelJob(source, cam_dir, out_dir, cfg.ir_label)
        map_ids(job, todo, workers=cfg.ir_label.workers, desc=STAGE)
    return len(todo)


def run(cfg: Config) -> int:
    rd = RunDir.from_config(cfg)
    rd.require(rd.cam_dir, made_by="make-cam")
    rd.start_stage(STAGE, cfg)
    make_labels(cfg, rd.cam_dir, rd.ir_label_dir, cfg.data.infer_split)
    return 0
