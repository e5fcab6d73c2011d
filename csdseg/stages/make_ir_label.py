"""make-ir-label: CAMs -> confident labels (IRN's cam_to_ir_label).

Reads ``runs/<name>/cam/<id>.npy`` (from ``csdseg make-cam``) for every image of
``data.infer_split`` and writes ``runs/<name>/ir_label/<id>.png``: a palette PNG whose pixel
values are 0 (confident background), 1..K (confident class) and 255 (uncertain). Each image
costs two dense CRFs, run on ``ir_label.num_workers`` processes (0 = one per core). Existing
outputs are kept, so an interrupted run resumes where it stopped. The work itself is
:func:`csdseg.refiners.ir_labels.make_labels` (make-csd-masks uses it too); the file format is
:mod:`csdseg.files.labels`'s.

Settings (``ir_label.*``): fg_threshold 0.30 and bg_threshold 0.05 (IRN's conf_fg_thres and
conf_bg_thres), crf_iters 10.
"""
from __future__ import annotations

from csdseg.config import Config
from csdseg.refiners.ir_labels import make_labels
from csdseg.runs import RunDir

HELP = "CAMs -> confident fg/bg/uncertain labels with two dense CRFs (IRN's cam_to_ir_label)"
STAGE = "make-ir-label"


def run(cfg: Config) -> int:
    rd = RunDir.from_config(cfg)
    rd.require(rd.cam_dir, made_by="make-cam")
    rd.start_stage(STAGE, cfg)
    make_labels(cfg, rd.cam_dir, rd.ir_label_dir, cfg.data.infer_split, desc=STAGE)
    return 0
