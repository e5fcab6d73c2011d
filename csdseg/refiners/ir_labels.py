"""Confident label PNGs of a folder of CAM files (IRN's cam_to_ir_label), for any caller.

Two stages make them: make-ir-label into its run's ``ir_label/``, and make-csd-masks into a
CSD run's ``csd_masks/`` from its baseline's CAMs. The work lives here, outside both, so that
no stage imports another. Each label map is 0 (confident background), 1..K (confident class)
or 255 (uncertain); each image costs two dense CRFs, run on ``ir_label.num_workers`` processes
(0 = one per core). Existing outputs are kept, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import logging
from pathlib import Path

from csdseg.files.cam import load_cam
from csdseg.config import Config, ConfigError, IrLabelConfig
from csdseg.data import Source, build_source
from csdseg.errors import StageError
from csdseg.files.labels import save_label_png
from csdseg.ops.confident_labels import confident_labels
from csdseg.ops.parallel import map_ids
from csdseg.runs import MissingInputError

log = logging.getLogger("csdseg.ir_labels")  # its name before the move: log lines unchanged


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
        save_label_png(self.out_dir / f"{image_id}.png", conf, self.source.num_classes)


def make_labels(cfg: Config, cam_dir: Path, out_dir: Path, split: str,
                desc: str = "make-ir-label") -> int:
    """Confident labels of ``cam_dir``'s CAMs for every id of ``split`` into ``out_dir``
    (existing files kept); returns how many were made. ``desc`` labels the progress bar."""
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
        map_ids(job, todo, workers=cfg.ir_label.num_workers, desc=desc)
    return len(todo)
