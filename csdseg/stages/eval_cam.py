"""Score the run's CAMs against the ground-truth masks of ``data.eval_split``.

Each CAM becomes a label map as in IRN's eval_cam: a constant background score
``eval.bg_threshold`` (0.15) is placed in front of the class maps and the arg-max wins, ties
going to background. The report gives per-class IoU and mIoU at that threshold and at the best
threshold of the sweep ``eval.sweep_start``..``eval.sweep_stop`` (computed in the same pass),
plus context over-activation when the dataset records background contexts (synthetic data).
It also gives mIoU over single- and over multi-label images and the confusion between
co-occurring classes (see ``csdseg.evaluation.groups``), at both thresholds.

Writes ``runs/<name>/reports/eval_cam_<split>.json`` (one file per split); ``--json`` prints that JSON instead of the table.
"""
from __future__ import annotations

import argparse
from typing import Any

from csdseg.config import Config, ConfigError
from csdseg.data import build_source
from csdseg.data.source import DataError
from csdseg.evaluation import evaluate_cams, format_report, sweep_thresholds, trivial_mious
from csdseg.files.atomic import atomic_write_json
from csdseg.runs import RunDir, eval_report_path
from csdseg.stages.args import add_config_arguments, config_from_args, print_report

HELP = "score CAMs against ground-truth masks (mIoU at 0.15 and over a threshold sweep)"
STAGE = "eval_cam"


def evaluate(cfg: Config, progress: bool = True) -> dict[str, Any]:
    """Compute the report and write it to ``reports/eval_cam_<split>.json``; returns it."""
    run = RunDir.from_config(cfg)
    cam_dir = run.require(run.cam_dir, made_by="make-cam")
    source = build_source(cfg.data, cfg.data.eval_split)
    if not source.has_masks():
        raise DataError(f"split '{cfg.data.eval_split}' has no ground-truth masks; set "
                        "data.eval_split to a split with masks (VOC: train or val) or data.mask_dir")
    try:
        sweep = sweep_thresholds(cfg.eval.sweep_start, cfg.eval.sweep_stop, cfg.eval.sweep_step)
    except ValueError as exc:
        raise ConfigError(f"eval.sweep_*: {exc}") from None
    run.start_stage(STAGE, cfg)
    report = evaluate_cams(source, source.ids, cam_dir, cfg.eval.bg_threshold, sweep,
                           progress=progress)
    report["split"] = cfg.data.eval_split
    report["trivial"] = trivial_mious(source, source.ids)
    atomic_write_json(eval_report_path(cfg, STAGE), report)
    return report


def run(cfg: Config) -> dict[str, Any]:
    return print_report(evaluate(cfg), format_report)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--json", action="store_true",
                        help="print the JSON report instead of the table")


def main(args: argparse.Namespace) -> int:
    print_report(evaluate(config_from_args(args)), format_report, args.json)
    return 0
