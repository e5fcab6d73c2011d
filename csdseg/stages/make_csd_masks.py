"""``csdseg make-csd-masks``: CSD's fg/bg masks for every training image, from a baseline run.

``csd.from_run=BASELINE`` (a run that has ``cam/`` from ``csdseg make-cam`` over
``data.train_split``): the masks are IRN's confident labels of the baseline's CAMs --
make-ir-label's own code, with ``ir_label.*`` (CRF, fg 0.30 / bg 0.05) -- written to this
(CSD) run's own ``runs/<name>/csd_masks/<id>.png`` (0 = background, 1..K = class, 255 =
uncertain: in neither mask). A stage never writes into another run: when the baseline's own
``ir_label/`` is complete and was made with the same settings (its recorded
``configs/make-ir-label.yaml``), its files are hard-linked instead of recomputed. Existing
files are kept. With ``csd.mask_source=DIR`` nothing is made: the folder is only checked and
scored.

When the split has ground-truth masks, the precision and recall of M_fg (any class vs. ground
truth foreground, and with the right class) and of M_bg are printed and saved to
``runs/<name>/reports/make_csd_masks.json``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path


from csdseg.config import Config, ConfigError, load_config, to_dict
from csdseg.config.fingerprint import HOW_NOT_WHAT
from csdseg.csd.dataset import MaskStore
from csdseg.data import Source, build_source
from csdseg.data.classes import IGNORE_INDEX
from csdseg.csd.masks import mask_place
from csdseg.files.atomic import atomic_link, atomic_write_json
from csdseg.refiners.ir_labels import make_labels
from csdseg.ops.confident_labels import split_fg_bg
from csdseg.engine.progress import progress_bar
from csdseg.runs import MissingInputError, RunDir

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
    for image_id in progress_bar(ids or source.ids, desc="csd mask precision/recall", leave=False):
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


def _settings(cfg: Config) -> dict:
    """What confident labels depend on besides the CAMs: the CRF settings and the split."""
    # how-not-what settings (e.g. ir_label.num_workers) never change a label: leave them out
    return {"ir_label": {k: v for k, v in to_dict(cfg)["ir_label"].items()
                         if f"ir_label.{k}" not in HOW_NOT_WHAT},
            "split": cfg.data.train_split, "data_root": cfg.data.root}


def reusable(base: RunDir, cfg: Config, ids: list[str]) -> bool:
    """The baseline's own ir_label/ holds every id, made with the same settings (its
    recorded configs/make-ir-label.yaml), so CSD can take those files instead of redoing
    the CRFs."""
    recorded = base.config("make-ir-label")
    if not recorded.is_file() or not all((base.ir_label_dir / f"{i}.png").is_file() for i in ids):
        return False
    # made from today's CAMs: CAM files written after the labels (new weights, cam.* changed;
    # a write renames into cam/, which moves the folder's mtime) leave labels of older maps,
    # and nothing retires those when the refiner never reads them
    if base.cam_dir.stat().st_mtime > recorded.stat().st_mtime:
        return False
    try:
        made = load_config(recorded)
    except ConfigError:
        return False
    made.data.train_split = made.data.infer_split  # the split make-ir-label wrote
    return _settings(made) == _settings(cfg)


def run(cfg: Config) -> dict:
    """Masks into this run's own ``csd_masks/`` (never into the baseline's folders)."""
    source = build_source(cfg.data, cfg.data.train_split)
    report_run = RunDir.from_config(cfg)
    place = mask_place(cfg)  # the one rule train-cam also follows
    folder = place.folder
    report_run.start_stage("make-csd-masks", cfg)  # the lock: this run's folders only
    if not place.made_here:  # csd.mask_source or csd.masks=final: check and score only
        missing = MaskStore(folder).missing(source.ids) if folder.is_dir() else source.ids
        if missing:
            raise MissingInputError(f"{folder} lacks {len(missing)} of {len(source)} masks of "
                                    f"split '{cfg.data.train_split}', e.g. {missing[0]}.png; "
                                    f"run `{place.command}` first")
    else:
        name = cfg.csd.from_run or cfg.name
        base = RunDir(Path(cfg.run_root) / name)
        base.require(base.cam_dir, made_by=f"make-cam -c CONFIG name={name}")
        if reusable(base, cfg, source.ids):  # same settings: the baseline's files, linked
            for i in source.ids:
                if not (folder / f"{i}.png").is_file():
                    atomic_link(base.ir_label_dir / f"{i}.png", folder / f"{i}.png")
            log.info("csd masks: linked %s's confident labels (same ir_label settings)", name)
        else:
            make_labels(cfg, base.cam_dir, folder, cfg.data.train_split, desc="make-csd-masks")
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
