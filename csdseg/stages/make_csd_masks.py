"""``csdseg make-csd-masks``: CSD's fg/bg masks for every training image, from a baseline run.

``csd.from_run=BASELINE`` (a run that has ``cam/`` from ``csdseg make-cam`` over
``data.train_split``): the masks are IRN's confident labels -- make-ir-label's own code, with
``ir_label.*`` (CRF, fg 0.30 / bg 0.05) -- written to ``runs/BASELINE/ir_label/<id>.png``
(0 = background, 1..K = class, 255 = uncertain: in neither mask). Existing files are kept.
With ``csd.mask_source=DIR`` nothing is made: the folder is only checked and scored.

When the split has ground-truth masks, the precision and recall of M_fg (any class vs. ground
truth foreground, and with the right class) and of M_bg are printed and saved to
``runs/BASELINE/reports/make_csd_masks.json``.
"""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from csdseg.config import Config
from csdseg.csd.dataset import MaskStore
from csdseg.data import Source, build_source
from csdseg.data.classes import IGNORE_INDEX
from csdseg.io import atomic_write_json
from csdseg.ops.confident_labels import split_fg_bg
from csdseg.runs import MissingInputError, RunDir
from csdseg.stages import make_ir_label

HELP = "CSD's fg/bg masks: confident labels of a baseline run's CAMs (csd.from_run=NAME)"
log = logging.getLogger("csdseg.make_csd_masks")


def mask_quality(source: Source, store: MaskStore, ids: list[str] | None = None) -> dict:
    """Pixel precision/recall of M_fg and M_bg against ground truth (void pixels ignored).

    fg: M_fg vs. gt in 1..K; fg_class: M_fg pixels whose class equals gt's; bg: M_bg vs. gt 0;
    coverage: share of non-void pixels in either mask.
    """
    tp = {"fg": 0, "fg_class": 0, "bg": 0}
    pred = {"fg": 0, "bg": 0}
    gt_n = {"fg": 0, "bg": 0}
    valid_n = 0
    for image_id in tqdm(ids or source.ids, desc="csd mask precision/recall", leave=False):
        gt = source.load_mask(image_id)
        label = store.load(image_id)
        fg, bg = split_fg_bg(label)
        valid = gt != IGNORE_INDEX
        gt_fg, gt_bg = valid & (gt != 0), valid & (gt == 0)
        fg, bg = fg & valid, bg & valid
        tp["fg"] += int((fg & gt_fg).sum())
        tp["fg_class"] += int((fg & gt_fg & (label == gt)).sum())
        tp["bg"] += int((bg & gt_bg).sum())
        pred["fg"] += int(fg.sum())
        pred["bg"] += int(bg.sum())
        gt_n["fg"] += int(gt_fg.sum())
        gt_n["bg"] += int(gt_bg.sum())
        valid_n += int(valid.sum())

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    return {
        "n_images": len(ids or source.ids),
        "fg_precision": ratio(tp["fg"], pred["fg"]), "fg_recall": ratio(tp["fg"], gt_n["fg"]),
        "fg_class_precision": ratio(tp["fg_class"], pred["fg"]),
        "fg_class_recall": ratio(tp["fg_class"], gt_n["fg"]),
        "bg_precision": ratio(tp["bg"], pred["bg"]), "bg_recall": ratio(tp["bg"], gt_n["bg"]),
        "coverage": ratio(pred["fg"] + pred["bg"], valid_n),
    }


def _fmt(x: float | None) -> str:
    return "  n/a" if x is None else f"{100 * x:5.1f}%"


def run(cfg: Config) -> dict:
    source = build_source(cfg.data, cfg.data.train_split)
    if cfg.csd.mask_source:
        folder, report_run = Path(cfg.csd.mask_source), RunDir.from_config(cfg)
        missing = MaskStore(folder).missing(source.ids) if folder.is_dir() else source.ids
        if missing:
            raise MissingInputError(f"csd.mask_source={folder} lacks {len(missing)} of "
                                    f"{len(source)} masks of split '{cfg.data.train_split}', "
                                    f"e.g. {missing[0]}.png")
    else:
        name = cfg.csd.from_run or cfg.name
        base = RunDir(Path(cfg.run_root) / name)
        base.require(base.cam_dir, made_by=f"make-cam -c CONFIG name={name}")
        # make-ir-label itself, pointed at the baseline run and the training split
        sub = copy.deepcopy(cfg)
        sub.name, sub.data.infer_split = name, cfg.data.train_split
        make_ir_label.run(sub)
        folder, report_run = base.ir_label_dir, base
    report: dict = {"mask_dir": str(folder), "split": cfg.data.train_split}
    if source.has_masks():
        report.update(mask_quality(source, MaskStore(folder)))
        lines = [f"CSD masks in {folder} vs. ground truth ({report['n_images']} images):",
                 f"  M_fg  precision {_fmt(report['fg_precision'])}  recall "
                 f"{_fmt(report['fg_recall'])}  (right class: {_fmt(report['fg_class_precision'])}"
                 f" / {_fmt(report['fg_class_recall'])})",
                 f"  M_bg  precision {_fmt(report['bg_precision'])}  recall "
                 f"{_fmt(report['bg_recall'])}",
                 f"  pixels in either mask: {_fmt(report['coverage'])}"]
        print("\n".join(lines))
        atomic_write_json(report_run.report("make_csd_masks"), report)
    else:
        log.info("split '%s' has no ground-truth masks: precision/recall not measured",
                 cfg.data.train_split)
    log.debug("%s", json.dumps(report))
    return report
