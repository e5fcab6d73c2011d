"""Score a folder of label PNGs (default: the run's pseudo-masks) against ground-truth masks.

Every image of ``data.eval_split`` (IRN: VOC train) must have ``<folder>/<id>.png`` holding
class indices (0 = background, 1..K; palette or L mode). The report gives per-class IoU and
mIoU, single- vs multi-label mIoU and co-occurrence confusion; it is written to
``runs/<name>/reports/eval_sem_seg_<split>_<refine.method>.json``, and ``--json`` prints it.
``--dir FOLDER`` scores any other folder of masks (e.g. confident labels or CRF masks).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from csdseg.config import Config
from csdseg.data import build_source
from csdseg.data.source import DataError
from csdseg.evaluation import evaluate_labels, format_report
from csdseg.files.atomic import atomic_write_json
from csdseg.runs import RunDir, eval_report_path
from csdseg.stages.args import add_config_arguments, config_from_args, print_report

HELP = "score pseudo-masks (or any folder of label PNGs) against ground truth: per-class IoU, mIoU"
STAGE = "eval_sem_seg"


def evaluate(cfg: Config, folder: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    run = RunDir.from_config(cfg)
    if folder is None:
        target = run.require(run.sem_seg_dir, made_by="make-sem-seg")
    else:
        target = Path(folder)
        if not target.is_dir():
            raise DataError(f"--dir {target} is not a folder of label PNGs")
    source = build_source(cfg.data, cfg.data.eval_split)
    if not source.has_masks():
        raise DataError(f"split '{cfg.data.eval_split}' has no ground-truth masks; set "
                        "data.eval_split to a split with masks (VOC: train or val) or data.mask_dir")
    run.start_stage(STAGE, cfg)
    report = evaluate_labels(source, source.ids, target, made_by="make-sem-seg", progress=progress)
    report["split"] = cfg.data.eval_split
    report["folder"] = str(target)
    # another folder than the run's pseudo-masks gets its own report, named after the folder
    path = (eval_report_path(cfg, STAGE) if folder is None
            else run.eval_report(STAGE, cfg.data.eval_split, f"dir_{target.name}"))
    atomic_write_json(path, report)
    return report


def run(cfg: Config) -> dict[str, Any]:
    return print_report(evaluate(cfg), format_report)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--dir", default=None, help="folder of label PNGs (default: sem_seg/)")
    parser.add_argument("--json", action="store_true", help="print the JSON report instead")


def main(args: argparse.Namespace) -> int:
    print_report(evaluate(config_from_args(args), args.dir), format_report, args.json)
    return 0
