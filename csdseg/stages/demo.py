"""``csdseg demo`` (``make demo``): the whole pipeline, baseline and CSD, on synthetic data (CPU).

Generates the synthetic dataset (if absent), then runs ``csdseg pipeline --baseline-and-csd``
for the IRN baseline (preset synthetic_irn) and the MCTformer baseline
(preset synthetic_mct) with tiny networks: CAMs, CSD masks, the warm-started CSD run and
its control (the same warm start and epochs, CSD off), confident labels, IRN and its random
walk, pseudo-masks, a tiny DeepLab and its evaluation. Prints both baseline / control / CSD
tables, each with CSD - control and one sentence on whether that difference exceeds the seed
noise, and writes ``runs/demo_irn/report.html`` and ``runs/demo_mct/report.html``. Rerunning skips every finished stage. The default sizes fit
about 10 minutes on 2 CPU cores (docs/pipeline.md records the measurement).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

HELP = "synthetic data -> full pipeline, IRN and MCTformer, with and without CSD -> table + report"
# baseline -> its packaged preset (csdseg/config/presets/), found by name wherever csdseg is installed
PRESETS = {"irn": "synthetic_irn", "mct": "synthetic_mct"}
# Seed noise of CSD - control on CAM mIoU @0.15 (train), in points: the std over 3 seeds of the
# paired difference, measured by bench/csd_experiment.py (docs/benchmarks.md, "CSD on the IRN
# baseline" and "CSD on the tiny MCTformer-V2", 2026-12-01: +0.3 +- 0.2 and +1.5 +- 0.7) on
# 1,000 images, more than the demo's, so the demo's own single-seed noise is if anything larger.
SEED_NOISE = {"irn": 0.2, "mct": 0.7}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="data/synthetic", help="synthetic dataset folder")
    parser.add_argument("--run-root", default="runs", help="where run directories go")
    parser.add_argument("--n-train", type=int, default=200)  # six pipelines in ~10 min on 2 cores
    parser.add_argument("--n-val", type=int, default=64)
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--epochs", type=int, default=6, help="train-cam epochs (baseline)")
    parser.add_argument("--csd-epochs", type=int, default=2, help="CSD epochs after warm start")
    parser.add_argument("--irn-epochs", type=int, default=2)
    # 2, not 3, since the demo also trains the control: six pipelines must fit ~10 min
    parser.add_argument("--seg-epochs", type=int, default=2)
    parser.add_argument("--baselines", nargs="+", choices=list(PRESETS), default=list(PRESETS))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: tiny models gain little from more, and on a "
                             "busy 2-core machine more threads only spin)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides for every run, e.g. device=cuda")


def demo_overrides(args: argparse.Namespace, baseline: str, root: Path) -> list[str]:
    """The presets shrunk to the demo's sizes; user overrides come last and win."""
    s = args.size
    return [
        f"data.root={root}", f"run_root={args.run_root}", f"name=demo_{baseline}",
        f"seed={args.seed}", "data.num_workers=1",
        f"train.epochs={args.epochs}", f"train.crop_size={s}",
        f"train.resize_long=[{3 * s // 4},{5 * s // 4}]",
        "cam.scales=[1.0]",  # + flip; the presets' multi-scale maps cost 4x here
        "irn.backbone=resnet10t", "irn.pretrained=none", f"irn.crop_size={s}",
        "irn.batch_size=16", f"irn.epochs={args.irn_epochs}",
        "seg.model=deeplabv2_tiny", "seg.pretrained=none", "seg.frozen_bn=false",
        f"seg.crop_size={s}", "seg.batch_size=16", f"seg.epochs={args.seg_epochs}",
        "seg.lr=0.001", "seg.num_workers=1", "seg.scales=[1.0]", "seg.log_every=5",
        f"seg.val_every={args.seg_epochs}",  # validate once, at the end
        *args.overrides,
    ]


def verdict(rows: list[dict], baseline: str) -> str:
    """One honest sentence on the CAM mIoU difference CSD - control."""
    row = next(r for r in rows if r["key"] == "cam_miou")
    if row["delta"] is None:
        return "CSD - control: not available (a run is missing)."
    delta, noise = 100 * row["delta"], SEED_NOISE[baseline]
    if abs(delta) <= 2 * noise:
        reading = (f"within 2x the seed noise ({noise:.1f} points std of CSD - control over 3 "
                   "seeds, docs/benchmarks.md): this table shows no measurable effect of CSD")
    else:
        reading = (f"beyond 2x the seed noise ({noise:.1f} points, docs/benchmarks.md), on one "
                   f"seed: CSD {'helped' if delta > 0 else 'hurt'} here")
    return f"CSD - control on CAM mIoU: {delta:+.1f} points, {reading}."


def main(args: argparse.Namespace) -> int:
    import torch

    from csdseg.data.synthetic import generate
    from csdseg.stages.pipeline import run_pipeline

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    root = generate(args.data, n_train=args.n_train, n_val=args.n_val, size=args.size,
                    seed=args.seed)
    tables, timings = {}, {"synth": time.time() - t0}
    for baseline in args.baselines:
        t = time.time()
        out = run_pipeline(PRESETS[baseline], demo_overrides(args, baseline, root),
                           baseline_and_csd=True, csd_epochs=args.csd_epochs)
        timings[baseline] = time.time() - t
        tables[baseline] = out
    print("\n" + "=" * 72)
    for baseline, out in tables.items():
        from csdseg.report.table import to_markdown

        print(f"\n{baseline.upper()}: baseline / control / CSD  (report: {out['report']})\n")
        print(to_markdown(out["table"], out["names"]))
        print("\n" + verdict(out["table"], baseline))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print("\ntimes: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items())
          + f"; total {(time.time() - t0) / 60:.1f} min (load average {load:.2f})")
    return 0
