"""Segment new images with a trained checkpoint: ``csdseg predict CKPT IMAGE_OR_DIR --out DIR``.

Needs nothing but the checkpoint (its meta names the model, the classes and their names). For
each image it writes ``<stem>.png``, the labels as a VOC-palette PNG (0 = background, i = the
i-th class of the checkpoint), and ``<stem>_overlay.png``: the image, the coloured labels
blended over it, and a legend of the classes present. Any size works (images smaller than the
network's minimum are padded), and any mode PIL reads (grayscale, RGBA, CMYK, palette).
Outputs that already exist are skipped.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from csdseg.data.source import DataError, read_image
from csdseg.device import resolve_device
from csdseg.io import atomic_save_png
from csdseg.engine.checkpoint import load_seg_model
from csdseg.ops.seg_inference import predict_probs
from csdseg.progress import progress_bar
from csdseg.visualize import palette_png, side_by_side

HELP = "segment images with a trained checkpoint (palette masks + overlays)"
EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def list_images(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
        if not images:
            raise DataError(f"{path} holds no images ({', '.join(sorted(EXTENSIONS))})")
        return images
    raise DataError(f"{path} is neither an image nor a folder of images")


def predict_files(checkpoint: Path, inputs: list[Path], out: Path, device: str = "auto",
                  scales: list[float] | None = None, flip: bool = True,
                  progress: bool = True) -> list[Path]:
    """Write mask + overlay PNGs for ``inputs`` into ``out``; returns the mask paths."""
    model, meta = load_seg_model(checkpoint, resolve_device(device))
    names = ["background", *meta["class_names"]]
    scales = scales or [1.0]
    if any(s <= 0 for s in scales):
        raise DataError(f"--scales must be positive numbers, got {scales}")
    stems = [p.stem for p in inputs]
    if len(set(stems)) != len(stems):
        raise DataError("two inputs share a file name stem; their outputs would collide")
    written = []
    for path in progress_bar(inputs, desc="predict", disable=not progress or len(inputs) < 2):
        mask_path, overlay_path = out / f"{path.stem}.png", out / f"{path.stem}_overlay.png"
        written.append(mask_path)
        if mask_path.is_file() and overlay_path.is_file():
            continue
        img = read_image(path)
        labels = predict_probs(model, img, next(model.parameters()).device, scales, flip).argmax(0)
        atomic_save_png(mask_path, palette_png(labels))
        atomic_save_png(overlay_path, Image.fromarray(side_by_side(img, labels.astype(np.int64), names)))
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a final checkpoint written by train-seg (checkpoints/seg.pt)")
    parser.add_argument("input", help="an image, or a folder of images")
    parser.add_argument("--out", required=True, help="folder for <stem>.png and <stem>_overlay.png")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0],
                        help="inference scales, e.g. 0.5 0.75 1.0 1.25 1.5 (default 1.0)")
    parser.add_argument("--no-flip", action="store_true", help="skip flip averaging")


def main(args: argparse.Namespace) -> int:
    inputs = list_images(Path(args.input))
    out = Path(args.out)
    predict_files(Path(args.checkpoint), inputs, out, args.device, args.scales, not args.no_flip)
    print(f"wrote {len(inputs)} mask(s) and overlay(s) to {out}")
    return 0
