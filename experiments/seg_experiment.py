"""Stages 2 and 3 on the CSD experiment's runs: pseudo-masks and DeepLab, baseline vs CSD.

Builds on ``experiments/csd_experiment.py`` (run it first with the same ``--out``): for each seed
and each of its classifiers (``base_s<seed>``, the IRN-style baseline, ``csd_s<seed>``, the same
network after the CSD fine-tuning, and ``ctl_s<seed>``, its control: the same fine-tuning with
CSD off), with the synthetic preset's settings:

  make-ir-label -> train-irn -> make-sem-seg (random walk) -> eval-sem-seg (train)
  -> train-seg (DeepLab on the pseudo-masks) -> eval-seg on val, without and with the dense CRF.

With ``--preset synthetic_mct`` (``refine.method=crf``) the pseudo-masks are CAM +
dense CRF and IRN is skipped; with ``refine.method=psa`` PSA's AffinityNet is trained
(train-aff) and walks instead; ``--no-seg`` stops after the pseudo-masks.

Stages whose outputs exist are skipped, so a killed experiment resumes; each (seed, run) writes
``<out>/seg_<run>_s<seed>.json``, so several processes can share the work
(``--seeds 0 --runs base`` in one, ``--seeds 0 --runs csd`` in another). Prints a markdown table
(mean +- std over the seeds found) last, next to the CAM mIoU from ``results_s<seed>.json``.

Usage: python experiments/seg_experiment.py --out runs/csd_exp --seeds 0 1 2 [key=value ...]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

from csdseg.stages.args import parse_args
from csdseg.config import Config, load_config
from csdseg.refiners import needs_training
from csdseg.stages import (eval_seg, eval_sem_seg, make_ir_label, make_sem_seg, train_aff,
                           train_irn, train_seg)

PRESET = Path(__file__).resolve().parents[1] / "csdseg/config/presets/synthetic_irn.yaml"
RUNS = ("base", "ctl", "csd")  # ctl: the same warm start and epochs as csd, CSD off


def pseudo_and_seg(cfg: Config, seg: bool = True) -> dict:
    trained_by = needs_training(cfg.refine.method)  # rw: train-irn, psa: train-aff, crf: none
    if trained_by == "train-irn":
        make_ir_label.run(cfg)
        if not (cfg.run_dir / "checkpoints" / "irn.pt").is_file():
            train_irn.run(cfg)
    elif trained_by == "train-aff" and not (cfg.run_dir / "checkpoints" / "aff.pt").is_file():
        train_aff.run(cfg)  # PSA's confident scores first, then AffinityNet
    make_sem_seg.run(cfg)
    pseudo = eval_sem_seg.evaluate(cfg, progress=False)
    out = {"pseudo_train": pseudo["miou"],
           "pseudo_ctx": (pseudo.get("context") or {}).get("matched"),
           "pseudo_gap": pseudo.get("single_multi_gap"),
           "pseudo_cooc": (pseudo.get("cooccurrence") or {}).get("mean")}
    if not seg:
        return out
    if not (cfg.run_dir / "checkpoints" / "seg.pt").is_file():
        train_seg.run(cfg)
    for crf in (False, True):
        c = dataclasses.replace(cfg, seg=dataclasses.replace(cfg.seg, crf=crf))
        report = eval_seg.evaluate(c, progress=False)
        out["seg_val_crf" if crf else "seg_val"] = report["miou"]
        if not crf:
            out["seg_val_cooc"] = (report.get("cooccurrence") or {}).get("mean")
    return out


def summarise(out: Path, seeds: list[int]) -> str:
    rows = [("CAM mIoU @0.15, train (csd_experiment)", "cam_train"),
            ("pseudo-mask mIoU (make-sem-seg: IRN walk or CAM + CRF), train", "pseudo_train"),
            ("pseudo-masks: bg labelled fg, preferred context", "pseudo_ctx"),
            ("pseudo-masks: single - multi-label mIoU gap", "pseudo_gap"),
            ("pseudo-masks: co-occurrence confusion", "pseudo_cooc"),
            ("DeepLab val mIoU, no CRF", "seg_val"),
            ("DeepLab val mIoU, + dense CRF", "seg_val_crf"),
            ("DeepLab val: co-occurrence confusion, no CRF", "seg_val_cooc")]
    table: dict[str, dict[str, list[float]]] = {r: {k: [] for _, k in rows} for r in RUNS}
    found = []
    for seed in seeds:
        cams = out / f"results_s{seed}.json"
        files = {r: out / f"seg_{r}_s{seed}.json" for r in RUNS}
        if not cams.is_file() or not all(f.is_file() for f in files.values()):
            continue
        found.append(seed)
        cam = json.loads(cams.read_text())
        for r, f in files.items():
            res = json.loads(f.read_text())
            res["cam_train"] = cam[r]["train"]["miou"]
            for _, key in rows:
                if res.get(key) is not None:
                    table[r][key].append(100 * res[key])

    def stat(values: list[float]) -> str:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.1f} ± {std:.1f}" if values else "-"

    lines = [f"| metric (seeds {found}, mean ± std) | baseline | control | CSD "
             "| CSD - control (paired) |", "|---|---|---|---|---|"]
    for label, k in rows:
        if not any(table[r][k] for r in RUNS):
            continue
        pairs = list(zip(table["csd"][k], table["ctl"][k]))
        delta = stat([a - b for a, b in pairs]) if len(pairs) == len(found) else "-"
        lines.append(f"| {label} | {stat(table['base'][k])} | {stat(table['ctl'][k])} | "
                     f"{stat(table['csd'][k])} | {'+' if delta[0] != '-' else ''}{delta} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/csd_experiment")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    parser.add_argument("--preset", default=str(PRESET), help="the config file of the runs")
    parser.add_argument("--no-seg", action="store_true", help="stop after the pseudo-masks")
    args = parse_args(parser)  # key=value overrides anywhere on the line
    out = Path(args.out)
    if not (out / "data").is_dir():
        raise SystemExit(f"{out}/data is missing: run experiments/csd_experiment.py --out {out} "
                         "first")
    start = time.time()
    for seed in args.seeds:
        for run in args.runs:
            path = out / f"seg_{run}_s{seed}.json"
            if path.is_file():
                continue
            cfg = load_config(args.preset, [f"data.root={out / 'data'}", f"run_root={out}",
                                       f"seed={seed}", f"name={run}_s{seed}", *args.overrides])
            if not (cfg.run_dir / "cam").is_dir():
                raise SystemExit(f"{cfg.run_dir}/cam is missing: run experiments/csd_experiment.py "
                                 f"--out {out} --seeds {seed} first")
            path.write_text(json.dumps(pseudo_and_seg(cfg, seg=not args.no_seg), indent=1))
    print(f"\n{time.time() - start:.0f} s; settings: {vars(args)}\n")
    print(summarise(out, args.seeds))


if __name__ == "__main__":
    main()
