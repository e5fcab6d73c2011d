"""Segment new images with a trained checkpoint: ``csdseg predict CKPT IMAGE_OR_DIR --out DIR``.

Needs nothing but the checkpoint (its meta names the model, the classes and their names). For
each image it writes ``<stem>.png``, the labels as a VOC-palette PNG (0 = background, i = the
i-th class of the checkpoint), and ``<stem>_overlay.png``: the image, the coloured labels
blended over it, and a legend of the classes present. Any mode PIL reads works (grayscale,
RGBA, CMYK, palette, 16-bit), and any size: images smaller than the network's minimum are
padded; a longer side above ``--max-side`` (1024) is scaled down for the network and the labels
scaled back (nearest-neighbour), so memory stays bounded; the overlay keeps the network's size.
EXIF orientation is ignored, as everywhere in csdseg: masks match the stored pixel grid.
Every input is checked before the model loads; one that cannot be read stops the run, named.
Outputs that already exist are skipped.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from csdseg.data.source import DataError, check_image, read_image
from csdseg.data.transforms import rescale, resize_to
from csdseg.device import resolve_device
from csdseg.files.atomic import atomic_save_png
from csdseg.engine.checkpoint import load_seg_model
from csdseg.ops.seg_inference import predict_probs
from csdseg.engine.progress import progress_bar
from csdseg.report.visualize import palette_png, side_by_side

HELP = "segment images with a trained checkpoint (palette masks + overlays)"
FIX = "replace it or move it out of the inputs"
log = logging.getLogger("csdseg.predict")
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


def check_inputs(inputs: list[Path]) -> None:
    """Decode every input once, cheaply (csdseg.data.source.check_image): a file that cannot be
    read stops the run before any work; EXIF orientation tags are reported, not applied."""
    turned = [(path, info.orientation) for path in inputs
              if (info := check_image(path, FIX)).orientation != 1]
    if turned:
        log.warning("%d input(s) carry an EXIF orientation tag, e.g. %s (orientation %d): it is "
                    "ignored, so the masks match the stored pixels (as VOC and COCO masks do); "
                    "to segment such photos upright, rotate their pixels first (e.g. "
                    "`mogrify -auto-orient` or `exiftran -ai`)", len(turned), *turned[0])


def predict_files(checkpoint: Path, inputs: list[Path], out: Path, device: str = "auto",
                  scales: list[float] | None = None, flip: bool = True,
                  progress: bool = True, max_side: int = 1024) -> list[Path]:
    """Write mask + overlay PNGs for ``inputs`` into ``out``; returns the mask paths."""
    scales = scales or [1.0]
    if any(s <= 0 for s in scales):
        raise DataError(f"--scales must be positive numbers, got {scales}")
    if max_side < 0:
        raise DataError(f"--max-side must be a number of pixels, or 0 for no limit; got {max_side}")
    stems = [p.stem for p in inputs]
    if len(set(stems)) != len(stems):
        raise DataError("two inputs share a file name stem; their outputs would collide")
    check_inputs(inputs)
    model, meta = load_seg_model(checkpoint, resolve_device(device))
    names = ["background", *meta["class_names"]]
    written = []
    for path in progress_bar(inputs, desc="predict", disable=not progress or len(inputs) < 2):
        mask_path, overlay_path = out / f"{path.stem}.png", out / f"{path.stem}_overlay.png"
        written.append(mask_path)
        if mask_path.is_file() and overlay_path.is_file():
            continue
        img = read_image(path, FIX)
        long_side = max(img.shape[:2])
        work = rescale(img, max_side / long_side) if 0 < max_side < long_side else img
        labels = predict_probs(model, work, next(model.parameters()).device, scales, flip).argmax(0)
        full = labels.astype(np.uint8)
        if work is not img:  # back to the stored size: one byte per pixel
            full = resize_to(full, img.shape[:2], nearest=True)
        atomic_save_png(mask_path, palette_png(full))
        picture = side_by_side(work, labels.astype(np.int64), names)
        atomic_save_png(overlay_path, Image.fromarray(picture))
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a final checkpoint written by train-seg (checkpoints/seg.pt)")
    parser.add_argument("input", help="an image, or a folder of images")
    parser.add_argument("--out", required=True, help="folder for <stem>.png and <stem>_overlay.png")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0],
                        help="inference scales, e.g. 0.5 0.75 1.0 1.25 1.5 (default 1.0)")
    parser.add_argument("--no-flip", action="store_true", help="skip flip averaging")
    parser.add_argument("--max-side", type=int, default=1024,
                        help="scale images whose longer side exceeds this down for the network "
                             "(masks come back at full size); 0 = never (default 1024)")


def main(args: argparse.Namespace) -> int:
    inputs = list_images(Path(args.input))
    out = Path(args.out)
    predict_files(Path(args.checkpoint), inputs, out, args.device, args.scales, not args.no_flip,
                  max_side=args.max_side)
    print(f"wrote {len(inputs)} mask(s) and overlay(s) to {out}")
    return 0
