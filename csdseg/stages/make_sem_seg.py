"""make-sem-seg: CAMs -> pseudo-masks, by IRN's random walk (default) or a dense CRF.

Reads ``runs/<name>/cam/<id>.npy`` for every image of ``data.infer_split`` and writes
``runs/<name>/sem_seg/<id>.png`` (VOC palette; 0 = background, 1..K). Existing masks are
kept, so an interrupted run resumes.

- ``irn.method=rw`` (IRN's make_sem_seg_labels): the boundary map of the trained IRN
  (``checkpoints/irn.pt``, from ``csdseg train-irn``) on the image and its mirror, each
  zero-padded to ``irn.crop_size`` as the official code does (IRNet.edge_displacement); the
  stride-4 CAMs walked 2^exp_times steps over affinities within ``irn.walk_radius`` (beta 10),
  upsampled, max-normalised, against a constant background of ``irn.sem_seg_bg_threshold``.
- ``irn.method=crf``: the full-resolution CAMs with a constant background score
  ``irn.crf_bg_threshold``, normalised to probabilities and refined by a dense CRF with the
  ``irn.crf_preset`` settings (DeepLab-v2's by default); no IRN needed.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from csdseg.cam_file import load_cam
from csdseg.config import Config, ConfigError, IrnConfig
from csdseg.data import Source, build_source
from csdseg.data.transforms import normalize
from csdseg.device import resolve_device
from csdseg.engine.checkpoint import load_weights
from csdseg.errors import StageError
from csdseg.models.irn import IRNet
from csdseg.ops.crf import SOFTMAX_PRESETS, crf_inference_softmax
from csdseg.ops.parallel import map_ids
from csdseg.ops.random_walk import random_walk, walk_to_labels
from csdseg.runs import MissingInputError, RunDir
from csdseg.stages.make_ir_label import save_label_png

HELP = "CAMs -> pseudo-masks with IRN's random walk (irn.method=rw) or a dense CRF (crf)"
STAGE = "make-sem-seg"
log = logging.getLogger(__name__)


class CrfJob:
    """One image's CAM + CRF pseudo-mask (picklable, for :func:`map_ids`)."""

    def __init__(self, source: Source, cam_dir: Path, out_dir: Path, cfg: IrnConfig) -> None:
        self.source, self.cam_dir, self.out_dir, self.cfg = source, cam_dir, out_dir, cfg

    def __call__(self, image_id: str) -> None:
        record = load_cam(self.cam_dir / f"{image_id}.npy", self.source.num_classes)
        img = self.source.load_image(image_id)
        cams = record.high_res
        _check_size(cams.shape[1:], img.shape[:2], self.cam_dir / f"{image_id}.npy")
        scores = np.concatenate([np.full((1,) + img.shape[:2], self.cfg.crf_bg_threshold,
                                         np.float32), np.clip(cams, 0, None)])
        probs = scores / scores.sum(axis=0, keepdims=True)
        pred = crf_inference_softmax(img, probs, **SOFTMAX_PRESETS[self.cfg.crf_preset]).argmax(0)
        lut = np.concatenate([[0], record.keys + 1])
        save_label_png(self.out_dir / f"{image_id}.png", lut[pred].astype(np.uint8))


def _check_size(got: tuple[int, ...], want: tuple[int, ...], path: Path) -> None:
    if tuple(got) != tuple(want):
        raise StageError(f"{path} is {tuple(got)} but its image is {tuple(want)}; the CAMs were "
                         "made for other images: rerun `csdseg make-cam` with this data.root")


@torch.no_grad()
def walk_one(model: IRNet, source: Source, cam_dir: Path, image_id: str, cfg: IrnConfig,
             device: torch.device) -> np.ndarray:
    """The random-walk pseudo-mask uint8 [H, W] of one image."""
    cam_path = cam_dir / f"{image_id}.npy"
    record = load_cam(cam_path)
    img = source.load_image(image_id)
    keys = record.keys
    if keys.size == 0:
        return np.zeros(img.shape[:2], np.uint8)
    boundary = model.infer_boundary(torch.from_numpy(normalize(img)).to(device), cfg.crop_size)
    cams = torch.from_numpy(record.cam).to(device)
    _check_size(cams.shape[1:], boundary.shape, cam_path)
    rw = random_walk(cams, boundary, cfg.beta, cfg.exp_times, cfg.walk_radius, cfg.walk_threads)
    return walk_to_labels(rw, keys, img.shape[:2], cfg.sem_seg_bg_threshold)


def run(cfg: Config) -> int:
    c = cfg.irn
    if c.method not in ("rw", "crf"):
        raise ConfigError(f"irn.method must be rw or crf, got '{c.method}'")
    if c.crf_preset not in SOFTMAX_PRESETS:
        raise ConfigError(f"irn.crf_preset must be one of {', '.join(SOFTMAX_PRESETS)}, "
                          f"got '{c.crf_preset}'")
    rd = RunDir.from_config(cfg)
    rd.require(rd.cam_dir, made_by="make-cam")
    if c.method == "rw":
        rd.require(rd.checkpoint("irn"), made_by="train-irn")
    source = build_source(cfg.data, cfg.data.infer_split)
    todo = [i for i in source.ids if not (rd.sem_seg_dir / f"{i}.png").exists()]
    missing = [i for i in todo if not (rd.cam_dir / f"{i}.npy").is_file()]
    if missing:
        raise MissingInputError(f"{len(missing)} CAM files of split '{cfg.data.infer_split}' are "
                                f"missing from {rd.cam_dir}, e.g. {missing[0]}.npy; run "
                                "`csdseg make-cam` first with the same data.infer_split")
    rd.start_stage(STAGE, cfg)
    log.info("%d pseudo-masks to make (%s), %d already done", len(todo), c.method,
             len(source.ids) - len(todo))
    rd.sem_seg_dir.mkdir(parents=True, exist_ok=True)
    if c.method == "crf":
        map_ids(CrfJob(source, rd.cam_dir, rd.sem_seg_dir, c), todo,
                workers=cfg.ir_label.workers, desc=STAGE)
        return 0
    device = resolve_device(cfg.device)
    model = IRNet(c.backbone, "none")
    load_weights(model, rd.checkpoint("irn"), expect={"backbone": c.backbone})
    model.to(device).eval()
    for image_id in tqdm(todo, desc=STAGE, unit="img", dynamic_ncols=True):
        labels = walk_one(model, source, rd.cam_dir, image_id, c, device)
        save_label_png(rd.sem_seg_dir / f"{image_id}.png", labels)
    return 0
