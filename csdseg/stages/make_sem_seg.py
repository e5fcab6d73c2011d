"""make-sem-seg: CAMs -> pseudo-masks, by the refiner ``refine.method`` names (csdseg.refiners).

Reads ``runs/<name>/cam/<id>.npy`` for every image of ``data.infer_split`` and writes
``runs/<name>/sem_seg/<id>.png`` (VOC palette; 0 = background, 1..K). Existing masks are
kept, so an interrupted run resumes.

- ``refine.method=rw`` (IRN's make_sem_seg_labels, the default): the random walk over the trained
  IRN's boundary map (``checkpoints/irn.pt``, from ``csdseg train-irn``);
- ``refine.method=crf``: the CAMs with a constant background score, refined by a dense CRF; no
  IRN needed;
- ``refine.method=psa``: PSA's random walk over the trained AffinityNet's affinities
  (``checkpoints/aff.pt``, from ``csdseg train-aff``; the ``psa.*`` settings).

Each refiner's file says what it does; this stage only checks the inputs, calls the refiner on
every image (on ``ir_label.num_workers`` processes when it is CPU work) and writes its label maps.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from csdseg.files.cam import load_cam
from csdseg.config import Config
from csdseg.data import Source, build_source
from csdseg.errors import StageError
from csdseg.files.labels import save_label_png
from csdseg.ops.parallel import map_ids
from csdseg.refiners import REFINERS, Refiner, get_refiner
from csdseg.refiners.random_walk import Walker
from csdseg.runs import MissingInputError, RunDir

HELP = "CAMs -> pseudo-masks by refine.method: IRN's walk (rw), a dense CRF (crf), PSA's walk (psa)"
STAGE = "make-sem-seg"
log = logging.getLogger(__name__)


def refine_image(refiner: Refiner, state: Any, source: Source, cam_dir: Path, image_id: str,
                 num_classes: int | None = None) -> np.ndarray:
    """One image's pseudo-mask uint8 [H, W]: its CAM file and image, checked, then refined."""
    cam_path = cam_dir / f"{image_id}.npy"
    record = load_cam(cam_path, num_classes)
    img = source.load_image(image_id)
    if record.size != img.shape[:2]:
        raise StageError(f"{cam_path} is {record.size} but its image is {img.shape[:2]}; the CAMs "
                         "were made for other images: rerun `csdseg make-cam` with this data.root")
    return refiner.refine(state, record, img)


class RefineJob:
    """One image's pseudo-mask, written to ``out_dir``; picklable, for :func:`map_ids`'s
    workers (the refiner travels by name and is looked up in the worker)."""

    def __init__(self, method: str, state: Any, source: Source, cam_dir: Path,
                 out_dir: Path) -> None:
        self.method, self.state, self.source = method, state, source
        self.cam_dir, self.out_dir = cam_dir, out_dir

    def __call__(self, image_id: str) -> None:
        labels = refine_image(REFINERS[self.method], self.state, self.source, self.cam_dir,
                              image_id, self.source.num_classes)
        save_label_png(self.out_dir / f"{image_id}.png", labels, self.source.num_classes)


def walk_one(model: Any, source: Source, cam_dir: Path, image_id: str, cfg: Config,
             device: Any) -> np.ndarray:
    """The random-walk pseudo-mask uint8 [H, W] of one image with a loaded IRN (the golden
    test's entry point: make-sem-seg's own path, boundary padding included)."""
    return refine_image(REFINERS["rw"], Walker(model, cfg.irn.crop_size, cfg.refine, device), source,
                        cam_dir, image_id)


def run(cfg: Config) -> int:
    refiner = get_refiner(cfg.refine.method)
    refiner.check(cfg)
    rd = RunDir.from_config(cfg)
    rd.require(rd.cam_dir, made_by="make-cam")
    if refiner.checkpoint is not None:
        rd.require(rd.checkpoint(refiner.checkpoint), made_by=refiner.trained_by)
    source = build_source(cfg.data, cfg.data.infer_split)
    todo = [i for i in source.ids if not (rd.sem_seg_dir / f"{i}.png").exists()]
    missing = [i for i in todo if not (rd.cam_dir / f"{i}.npy").is_file()]
    if missing:
        raise MissingInputError(f"{len(missing)} CAM files of split '{cfg.data.infer_split}' are "
                                f"missing from {rd.cam_dir}, e.g. {missing[0]}.npy; run "
                                "`csdseg make-cam` first with the same data.infer_split")
    rd.start_stage(STAGE, cfg)
    log.info("%d pseudo-masks to make (%s), %d already done", len(todo), refiner.name,
             len(source.ids) - len(todo))
    rd.sem_seg_dir.mkdir(parents=True, exist_ok=True)
    job = RefineJob(refiner.name, refiner.prepare(cfg, rd), source, rd.cam_dir, rd.sem_seg_dir)
    map_ids(job, todo, workers=cfg.ir_label.num_workers if refiner.parallel else 1, desc=STAGE)
    return 0
