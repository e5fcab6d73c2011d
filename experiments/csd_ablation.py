"""One CSD variant against the runs of experiments/csd_experiment.py (same baseline, same budget).

Example (the literal per-class max normaliser instead of the default global one):
  python experiments/csd_ablation.py --out runs/csd_experiment --seed 0 --name max \
      csd.normalizer=max
Trains ``<name>_s<seed>`` warm-started from ``base_s<seed>`` with CSD and the overrides,
evaluates it like the experiment's runs and writes ``<out>/ablation_<name>_s<seed>.json``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from csdseg.stages.args import parse_args
from csd_experiment import PRESET, evaluate  # experiments/ is on sys.path when a script runs
from csdseg.config import load_config
from csdseg.stages import make_csd_masks, train_cam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/csd_experiment")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", required=True)
    parser.add_argument("--extra-epochs", type=int, default=4)
    parser.add_argument("--extra-lr", type=float, default=0.01)
    args = parse_args(parser)  # key=value overrides anywhere on the line
    out, seed = Path(args.out), args.seed
    base = out / f"base_s{seed}"
    if not (base / "checkpoints" / "cam.pt").is_file():
        raise SystemExit(f"{base} has no checkpoint: run experiments/csd_experiment.py first")
    cfg = load_config(PRESET, [
        f"data.root={out / 'data'}", f"run_root={out}", f"seed={seed}", f"name={args.name}_s{seed}",
        f"train.init_from={base}", f"train.epochs={args.extra_epochs}", f"optim.lr={args.extra_lr}",
        "csd.enabled=true", f"csd.from_run=base_s{seed}", *args.overrides])
    if not (cfg.run_dir / "checkpoints" / "cam.pt").is_file():
        make_csd_masks.run(cfg)  # this run's own masks (linked from base's confident labels)
        train_cam.run(cfg)
    result = {"overrides": args.overrides, **evaluate(cfg)}
    path = out / f"ablation_{args.name}_s{seed}.json"
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result["train"][k] for k in ("miou", "best_miou", "ctx_ratio")}))


if __name__ == "__main__":
    main()
