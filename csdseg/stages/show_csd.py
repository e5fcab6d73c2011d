"""``csdseg show-csd``: look at what CSD trains on before (or after) training.

One row per sample that gets views (epoch 0, in index order): X_m | X_s | masks (M_fg of X_s
in its class colour, the pasted background B in grey) | X_sm_fg | X_sm_bg; with
``--checkpoint`` also the normalised maps of X_s (class c), X_sm_fg (class c) and X_sm_bg (X_m's
classes). Beside the grid, ``<out stem>_cooccurrence.png``: the heat-map of P.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from csdseg.config import Config
from csdseg.data import build_source
from csdseg.data.augment import cam_augment
from csdseg.data.cam_dataset import ClassificationDataset
from csdseg.data.transforms import denormalize
from csdseg.files.atomic import atomic_save_png
from csdseg.runs import RunDir
from csdseg.stages.args import add_config_arguments, config_from_args
from csdseg.report.visualize import overlay

HELP = "picture grid of CSD's pasted views (and maps) plus the co-occurrence heat-map"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--n", type=int, default=16, help="samples (rows) to show")
    parser.add_argument("--out", default="csd_grid.png", help="output PNG")
    parser.add_argument("--checkpoint", default="", help="a CAM checkpoint: also show its maps")


def _heat(img: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Blend a [0, 1] map [h, w] (upsampled) as red over an RGB image [S, S, 3]."""
    t = torch.from_numpy(a)[None, None].float()
    a = F.interpolate(t, size=img.shape[:2], mode="bilinear", align_corners=False)[0, 0].numpy()
    red = np.zeros_like(img, dtype=np.float32)
    red[..., 0] = 255
    w = np.clip(a, 0, 1)[..., None] * 0.6
    return ((1 - w) * img + w * red).round().astype(np.uint8)


def _maps(model: torch.nn.Module, x: torch.Tensor, cfg: Config) -> np.ndarray:
    from csdseg.csd.consistency import normalize_maps

    with torch.no_grad():
        return normalize_maps(model(x[None])["maps"], cfg.csd.normalizer, cfg.csd.norm_floor)[0].numpy()


def cooccurrence_figure(P: np.ndarray, names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(P, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_yticks(range(len(names)), names, fontsize=6)
    ax.set_xlabel("pasted class c")
    ax.set_ylabel("class a of X_m")
    ax.set_title("P = row-softmax(tau * C)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    from csdseg.csd.trainer import build_csd_training

    cfg = config_from_args(args)
    source = build_source(cfg.data, cfg.data.train_split)
    base = ClassificationDataset(source, cam_augment(cfg.train), cfg.seed)
    dataset, _, _ = build_csd_training(cfg, source, base, RunDir.from_config(cfg))
    model = None
    if args.checkpoint:
        from csdseg.engine.checkpoint import load_weights
        from csdseg.stages.cam_model import build_cam_model

        model = build_cam_model(cfg.model, source.num_classes)
        load_weights(model, Path(args.checkpoint), expect={"num_classes": source.num_classes})
        model.eval()
    rows = []
    for index in range(len(dataset)):
        if len(rows) >= args.n:
            break
        item = dataset[(0, index)]
        v = item["csd"]
        if v is None:
            continue
        c = int(v["cls"])
        x_m, x_s = denormalize(item["img"].numpy()), denormalize(v["x_s"].numpy())
        fg_lab = np.where(v["m_fg"].numpy(), c + 1, 0).astype(np.uint8)
        masks = overlay(x_s, fg_lab, 0.7)
        masks[v["m_bg"].numpy()] = (0.4 * masks[v["m_bg"].numpy()] + 0.6 * 128).astype(np.uint8)
        panels = [x_m, x_s, masks,
                  denormalize(v["x_fg"].numpy()), denormalize(v["x_bg"].numpy())]
        if model is not None:
            present = np.flatnonzero(item["label"].numpy() > 0)
            panels += [_heat(x_s, _maps(model, v["x_s"], cfg)[c]),
                       _heat(panels[3], _maps(model, v["x_fg"], cfg)[c]),
                       _heat(panels[4], _maps(model, v["x_bg"], cfg)[present].max(0))]
        gap = np.full((x_m.shape[0], 4, 3), 255, np.uint8)
        rows.append(np.concatenate([p for panel in panels for p in (panel, gap)][:-1], 1))
    if not rows:
        print("show-csd: no sample of this split gets CSD views (no multi-label image?)")
        return 1
    hgap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    grid = np.concatenate([p for r in rows for p in (r, hgap)][:-1], 0)
    out = Path(args.out)
    atomic_save_png(out, Image.fromarray(grid))
    if not hasattr(dataset.sampler, "P"):  # csd.pair_by=context: no co-occurrence to draw
        print(f"show-csd: {len(rows)} samples -> {out}")
        return 0
    heat = out.with_name(f"{out.stem}_cooccurrence.png")
    cooccurrence_figure(dataset.sampler.P, source.class_names, heat)
    print(f"show-csd: {len(rows)} samples -> {out}; co-occurrence heat-map -> {heat}")
    return 0
