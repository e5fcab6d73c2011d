"""How far a run's random walk should go, and how much its learned boundary costs.

For a run with CAMs and a trained IRN (``csdseg train-irn``), on the first ``--n`` images of
``data.infer_split`` (which must have masks): the mIoU of the CAMs (background threshold
``eval.bg_threshold``, and the walk's ``refine.bg_threshold``) and of the random-walk pseudo-masks for each ``--exp-times``, once with
the IRN's boundary map and once with an oracle boundary (1 where the ground-truth label changes
at stride 4, and on void). The gap between the two rows is what a better boundary would buy.

Usage: python experiments/walk_sweep.py -c synthetic_irn [key=value ...] \
           [--n 200] [--exp-times 2 3 4 6 8]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from csdseg.stages.args import parse_args
from csdseg.files.cam import load_cam
from csdseg.config import load_config
from csdseg.data import build_source
from csdseg.data.transforms import normalize
from csdseg.engine.checkpoint import load_weights
from csdseg.evaluation.metrics import confusion_matrix, iou_per_class
from csdseg.models.irn import IRNet
from csdseg.ops.random_walk import random_walk, walk_to_labels
from csdseg.runs import RunDir


def oracle_boundary(mask: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    """1 at stride-4 cells whose label differs from the cell below or to the right, or void."""
    g = mask[::4, ::4][:shape[0], :shape[1]]
    edge = g == 255
    edge[:-1] |= g[:-1] != g[1:]
    edge[:, :-1] |= g[:, :-1] != g[:, 1:]
    return torch.from_numpy(edge.astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--exp-times", type=int, nargs="+", default=[2, 3, 4, 6, 8])
    args = parse_args(parser)  # key=value overrides anywhere on the line
    cfg = load_config(args.config, args.overrides)
    c, w, run = cfg.irn, cfg.refine, RunDir.from_config(cfg)
    model = IRNet(c.backbone, "none", c.train_backbone)
    load_weights(model, run.require(run.checkpoint("irn"), made_by="train-irn"))
    model.eval()
    source = build_source(cfg.data, cfg.data.infer_split)
    k = source.num_classes + 1
    cam_thresholds = sorted({cfg.eval.bg_threshold, w.bg_threshold})
    conf: dict[tuple[str, float], np.ndarray] = {}
    for image_id in source.ids[:args.n]:
        record = load_cam(run.cam_dir / f"{image_id}.npy", source.num_classes)
        img, gt = source.load_image(image_id), source.load_mask(image_id).astype(np.int64)
        keys = record.keys
        lut = np.concatenate([[0], keys + 1])
        high = record.high_res
        preds = {}
        for t in cam_thresholds:  # eval-cam's default, and the walk's own background level
            scores = np.concatenate([np.full((1,) + high.shape[1:], t, np.float32), high])
            preds[("cam", t)] = lut[scores.argmax(0)]
        cams = torch.from_numpy(record.cam)
        learned = model.infer_boundary(torch.from_numpy(normalize(img)), cfg.irn.crop_size)
        boundaries = {"IRN boundary": learned, "oracle boundary": oracle_boundary(gt, learned.shape)}
        for name, boundary in boundaries.items():
            for e in args.exp_times:
                walked = random_walk(cams, boundary, w.beta, e, w.walk_radius) if keys.size else None
                preds[(name, e)] = (walk_to_labels(walked, keys, gt.shape, w.bg_threshold)
                                    if keys.size else np.zeros_like(gt))
        valid = gt != 255
        for key, pred in preds.items():
            conf.setdefault(key, np.zeros((k, k), np.int64))
            conf[key] += confusion_matrix(gt[valid], pred[valid].astype(np.int64), k)
    n = min(args.n, len(source.ids))
    print(f"\n{n} images of '{cfg.data.infer_split}', run {run.root}, beta {w.beta}, "
          f"radius {w.walk_radius}, bg threshold {w.bg_threshold}\n")
    print("| pseudo-masks | exp_times (steps) | mIoU |\n|---|---|---|")
    for (name, e), matrix in conf.items():
        steps = f"{e} ({2 ** e})" if name != "cam" else "-"
        label = f"CAMs, background threshold {e}" if name == "cam" else f"random walk, {name}"
        print(f"| {label} | {steps} | {100 * np.nanmean(iou_per_class(matrix)):.1f} |")


if __name__ == "__main__":
    main()
