"""Write the built-in synthetic dataset in the VOC layout.

  csdseg synth data/synth --n-train 2000 --n-val 500 --size 128 --seed 0

The result is read like VOC: ``data.dataset=voc data.root=data/synth`` (train_aug.txt is a copy
of train.txt, so the VOC split defaults work). ``--layouts-from`` takes object shapes and class
sets from real VOC-style masks (e.g. VOC2012/SegmentationClass) instead of drawing them; train
and val use disjoint parts of that folder, so val holds out object layouts.
Rerunning the same command resumes. See docs/synthetic.md.
"""
from __future__ import annotations

import argparse

from csdseg.data.synthetic import P_CONTEXT, generate

HELP = "write the synthetic dataset (20 VOC classes, 8 background contexts) in the VOC layout"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (created); becomes data.root")
    parser.add_argument("--n-train", type=int, default=2000, help="training images (default 2000)")
    parser.add_argument("--n-val", type=int, default=500, help="validation images (default 500)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="same seed -> byte-identical files")
    parser.add_argument("--layouts-from", metavar="MASK_DIR", default=None,
                        help="take layouts from these VOC-style palette PNG masks; train and val "
                        "draw from disjoint parts of the folder (val holds out layouts)")
    parser.add_argument("--p-context", type=float, default=P_CONTEXT,
                        help=f"chance that the background is a present class's context ({P_CONTEXT})")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")


def main(args: argparse.Namespace) -> int:
    out = generate(args.out, args.n_train, args.n_val, args.size, args.seed,
                   layouts_from=args.layouts_from, p_context=args.p_context, workers=args.workers)
    print(f"csdseg synth: wrote {args.n_train} train + {args.n_val} val images to {out}")
    return 0
