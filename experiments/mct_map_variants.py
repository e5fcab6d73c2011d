"""Which part of a trained MCTformer's maps localises: attention, patch CAM, fused, refined.

For the first ``--n`` images of ``data.infer_split`` (with masks), at scale 1.0 without flip:
the class-to-patch attention of the last ``attn_layers`` blocks, V2's ReLU'd patch CAM, their
product (the fused map), and both refined by the patch-to-patch attention of every block --
each min-max normalised per class and scored at background thresholds 0 to 0.6 (step 0.05)
against the ground truth of the image's classes; also the share of images whose predicted
label set (class-token score > 0) is exactly right.

Usage: python experiments/mct_map_variants.py -c synthetic_mct [key=value ...] [--n 150]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from csdseg.stages.args import parse_args
from csdseg.config import load_config
from csdseg.data import build_source
from csdseg.data.transforms import normalize
from csdseg.evaluation.metrics import confusion_matrix, iou_per_class
from csdseg.models.mctformer import MCTformer
from csdseg.stages.make_cam import load_cam_model

THRESHOLDS = [round(t, 2) for t in np.arange(0.0, 0.61, 0.05)]


@torch.no_grad()
def map_variants(model: MCTformer, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """x [1, 3, H, W] -> ({variant: maps [1, K, h, w]}, class-token logits [K])."""
    k = model.num_classes
    tokens, attns, (h, w) = model._encode(x, set(range(model.depth)))
    last = range(model.depth - model.attn_layers, model.depth)
    attn = sum(attns[i][:, :k, k:] for i in last).reshape(1, k, h, w)
    patch_attn = sum(a[:, k:, k:] for a in attns.values())

    def refine(maps: torch.Tensor) -> torch.Tensor:
        return (patch_attn.unsqueeze(1) @ maps.flatten(2).unsqueeze(-1)).reshape(1, k, h, w)

    out = {"attention": attn, "attention, refined": refine(attn)}
    if model.head is not None:
        patch_cam = F.relu(model.head(tokens[:, k:].transpose(1, 2).reshape(1, -1, h, w)))
        out.update({"patch CAM": patch_cam, "fused": attn * patch_cam,
                    "fused, refined (official maps)": refine(attn * patch_cam)})
    return out, tokens[0, :k].mean(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--n", type=int, default=150)
    args = parse_args(parser)  # key=value overrides anywhere on the line
    cfg = load_config(args.config, args.overrides)
    source = build_source(cfg.data, cfg.data.infer_split)
    model = load_cam_model(cfg, source.num_classes, torch.device("cpu"))
    if not isinstance(model, MCTformer):
        raise SystemExit(f"model.name={cfg.model.name} is not an MCTformer")
    n_cls = source.num_classes + 1
    conf: dict[tuple[str, float], np.ndarray] = {}
    exact = []
    for image_id in source.ids[:args.n]:
        img, gt = source.load_image(image_id), source.load_mask(image_id).astype(np.int64)
        keys = np.asarray(source.label(image_id)).nonzero()[0]
        variants, logits = map_variants(model, torch.from_numpy(normalize(img))[None])
        exact.append(set((logits > 0).nonzero().flatten().tolist()) == set(keys.tolist()))
        lut = np.concatenate([[0], keys + 1])
        valid = gt != 255
        for name, maps in variants.items():
            up = F.interpolate(maps, size=gt.shape, mode="bilinear", align_corners=False)[0, keys]
            flat = up.flatten(1)
            lo, hi = flat.min(1)[0][:, None, None], flat.max(1)[0][:, None, None]
            up = ((up - lo) / (hi - lo + 1e-5)).numpy()
            for t in THRESHOLDS:
                pred = lut[np.concatenate([np.full((1,) + gt.shape, t, np.float32), up]).argmax(0)]
                key = (name, t)
                conf[key] = conf.get(key, 0) + confusion_matrix(gt[valid], pred[valid], n_cls)
    print(f"\n{len(exact)} images of '{cfg.data.infer_split}', run {cfg.run_dir}; "
          f"exact label sets from the class tokens: {100 * np.mean(exact):.1f}%\n")
    print("| maps | mIoU @0.15 | best mIoU (threshold) |\n|---|---|---|")
    for name in dict.fromkeys(n for n, _ in conf):
        scores = {t: 100 * np.nanmean(iou_per_class(conf[(name, t)])) for t in THRESHOLDS}
        best = max(scores, key=scores.get)
        print(f"| {name} | {scores[0.15]:.1f} | {scores[best]:.1f} ({best:.2f}) |")


if __name__ == "__main__":
    main()
