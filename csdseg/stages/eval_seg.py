"""Score the trained segmentation network on ``seg.eval_split`` (or ``--split``).

Each image is predicted at the scales ``seg.scales`` (0.5, 0.75, 1.0, 1.25, 1.5) and their
horizontal flips (``seg.flip``); the softmax outputs are averaged at full resolution, optionally
refined by a dense CRF (``seg.crf``, settings ``seg.crf_preset``), and the arg-max is the label.
The report is the dataset-level mIoU table eval-cam prints, written to
``reports/eval_seg_<split>[_crf].json``. ``--save-png`` also writes the labels as VOC-palette PNGs to
``seg_pred/``; ``--submission`` writes the PASCAL VOC server layout
``results/VOC2012/Segmentation/comp6_test_cls/<id>.png`` (for splits without masks, e.g. test).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from csdseg.config import Config, ConfigError
from csdseg.data import build_source
from csdseg.data.source import DataError, Source
from csdseg.device import resolve_device
from csdseg.errors import StageError
from csdseg.evaluation import evaluate_labels, format_report
from csdseg.files.atomic import atomic_save_png, atomic_write_json
from csdseg.engine.checkpoint import load_seg_model
from csdseg.ops.seg_inference import predict_probs
from csdseg.engine.progress import progress_bar
from csdseg.runs import RunDir
from csdseg.stages.args import add_config_arguments, config_from_args, print_report
from csdseg.report.visualize import palette_png

HELP = "score the segmentation network (multi-scale + flip, optional CRF) and write predictions"
STAGE = "eval_seg"
SUBMISSION = Path("results") / "VOC2012" / "Segmentation" / "comp6_test_cls"


def make_predictor(model: torch.nn.Module, source: Source, device: torch.device,
                   scales: list[float], flip: bool, crf: bool = False,
                   crf_preset: str = "deeplab_v2") -> Callable[[str], np.ndarray]:
    """``fn(id) -> labels int64 [H, W]`` (0 = background, 1..K)."""
    from csdseg.ops.crf import SOFTMAX_PRESETS, crf_inference_softmax

    if crf and crf_preset not in SOFTMAX_PRESETS:
        raise ConfigError(f"seg.crf_preset '{crf_preset}' is not one of: "
                          f"{', '.join(SOFTMAX_PRESETS)}")
    if not scales or any(s <= 0 for s in scales):
        raise ConfigError(f"seg.scales must be a non-empty list of positive numbers, got {scales}")

    def predict(image_id: str) -> np.ndarray:
        img = source.load_image(image_id)
        probs = predict_probs(model, img, device, scales, flip)
        if crf:
            probs = crf_inference_softmax(img, probs, **SOFTMAX_PRESETS[crf_preset])
        return probs.argmax(0).astype(np.int64)

    return predict


def evaluate(cfg: Config, split: str | None = None, checkpoint: str | None = None,
             save_png: bool = False, submission: bool = False,
             progress: bool = True) -> dict[str, Any]:
    seg = cfg.seg
    run = RunDir.from_config(cfg)
    ckpt = Path(checkpoint) if checkpoint else run.require(run.checkpoint("seg"), made_by="train-seg")
    split = split or seg.eval_split
    source = build_source(cfg.data, split)
    first = source.mask_path(source.ids[0]) if source.has_masks() else None
    scoring = first is not None and first.is_file()  # VOC's test ids share the folder, unlabelled
    if not scoring and not (save_png or submission):
        raise DataError(f"split '{split}' has no ground-truth masks to score against; pass "
                        "--submission (or --save-png) to write predictions instead")
    device = resolve_device(cfg.device)
    model, meta = load_seg_model(ckpt, device)
    if meta["class_names"] != list(source.class_names):
        raise StageError(f"checkpoint {ckpt} was trained on classes {meta['class_names'][:3]}..., "
                         f"not those of data.dataset={cfg.data.dataset}; use the matching dataset")
    run.start_stage(STAGE, cfg)
    predict = make_predictor(model, source, device, seg.scales, seg.flip, seg.crf, seg.crf_preset)
    outputs = ([run.root / "seg_pred"] if save_png else []) + \
              ([run.root / SUBMISSION] if submission else [])

    def predict_and_save(image_id: str) -> np.ndarray:
        labels = predict(image_id)
        for folder in outputs:
            atomic_save_png(folder / f"{image_id}.png", palette_png(labels))
        return labels

    if not scoring:
        todo = [i for i in source.ids if not all((f / f"{i}.png").is_file() for f in outputs)]
        for image_id in progress_bar(todo, desc="eval-seg", disable=not progress):
            predict_and_save(image_id)
        return {"split": split, "n_images": len(source.ids), "written": [str(f) for f in outputs]}
    report = evaluate_labels(source, source.ids, predict_and_save, progress=progress)
    report.update(split=split, scales=list(seg.scales), flip=seg.flip, crf=seg.crf,
                  checkpoint=str(ckpt))
    # the run's own report for its own checkpoint and seg.eval_split; any other split or
    # checkpoint gets its own file, so it never overwrites (or passes for) the run's
    variant = "_".join(v for v in ("crf" if seg.crf else "",
                                   f"ckpt_{Path(checkpoint).stem}" if checkpoint else "") if v)
    atomic_write_json(run.eval_report(STAGE, split, variant), report)
    return report


def run(cfg: Config) -> dict[str, Any]:
    return print_report(evaluate(cfg), format_report)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--split", help="split to score (default: seg.eval_split)")
    parser.add_argument("--checkpoint", help="weights to score (default: the run's checkpoints/seg.pt)")
    parser.add_argument("--save-png", action="store_true",
                        help="also write VOC-palette predictions to <run>/seg_pred/")
    parser.add_argument("--submission", action="store_true",
                        help=f"write <run>/{SUBMISSION}/<id>.png for the evaluation server")
    parser.add_argument("--json", action="store_true", help="print the JSON report")


def main(args: argparse.Namespace) -> int:
    report = evaluate(config_from_args(args), split=args.split, checkpoint=args.checkpoint,
                      save_png=args.save_png, submission=args.submission)
    if args.json:
        print(json.dumps(report, indent=2))
    elif "miou" in report:
        print(format_report(report))
    else:
        print(f"wrote {report['n_images']} predictions to {', '.join(report['written'])}")
    return 0
