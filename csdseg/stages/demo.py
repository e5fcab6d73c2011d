"""``csdseg demo``: the CAM stage end to end on the built-in synthetic data, on the CPU.

Generates the synthetic dataset (if absent), trains the tiny IRN-style classifier, writes the
multi-scale CAMs and prints their evaluation (per-class IoU, mIoU, context over-activation).
Everything goes under ``runs/demo`` and ``data/synthetic``; rerunning skips finished stages.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from csdseg.config import load_config

HELP = "run the CAM stage end to end on the synthetic data (CPU, minutes) and print the table"
PRESET = Path(__file__).resolve().parents[2] / "configs" / "synthetic_irn.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="data/synthetic", help="synthetic dataset folder")
    parser.add_argument("--run-root", default="runs", help="where run directories go")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-val", type=int, default=200)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides for the runs, e.g. device=cuda")


def main(args: argparse.Namespace) -> int:
    from csdseg.data.synthetic import generate
    from csdseg.stages import eval_cam, make_cam, train_cam

    root = generate(args.data, n_train=args.n_train, n_val=args.n_val, size=args.size,
                    seed=args.seed)
    cfg = load_config(PRESET if PRESET.is_file() else None, [
        f"data.root={root}", f"run_root={args.run_root}", "name=demo_irn",
        f"train.epochs={args.epochs}", f"seed={args.seed}", *args.overrides])
    if not cfg.run_dir.joinpath("checkpoints", "cam.pt").is_file():
        train_cam.run(cfg)
    make_cam.run(cfg)
    eval_cam.run(cfg)
    return 0
