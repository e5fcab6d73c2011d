"""Baseline vs CSD vs control on the synthetic benchmark, several seeds, one command.

For each training seed:
  base  -- the IRN-style baseline from scratch (preset synthetic_irn, ``--epochs``);
  csd   -- warm-started from ``base`` for ``--extra-epochs`` with CSD (masks = base's
           confident labels, csdseg make-csd-masks);
  ctl   -- the control: the same warm start and extra epochs, CSD off.
Each run gets make-cam and eval-cam on the train split (IRN's protocol) and on val, and the
mIoU of its confident labels (two dense CRFs, scored on the confident pixels only) on train.
Stages whose outputs exist are skipped, so a killed experiment resumes. Writes
``<out>/results_s<seed>.json`` and prints a markdown table (mean +- std over seeds) last.

Each run's result is also kept in ``<out>/part_<run>_s<seed>.json``; ``--jobs 2`` trains
two runs at once as child processes (one torch thread each; a seed's csd and ctl wait for its
base), with the same result files as one process at the same OMP_NUM_THREADS
(tests/test_job_pool.py); give ``ir_label.num_workers=1`` so that each child's CRFs do not
start a pool of their own.

Usage: python experiments/csd_experiment.py --out runs/csd_exp --seeds 0 1 2 [--jobs 2]
           [key=value ...]
       (``--preset synthetic_mct --extra-lr 1e-4``: the same on MCTformer)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from csdseg.stages.args import parse_args, split_overrides
from job_pool import Job, python_argv, run_jobs
from csdseg.config import Config, load_config
from csdseg.data import build_source
from csdseg.data.synthetic import generate
from csdseg.files.atomic import atomic_write_json
from csdseg.files.labels import read_label_png
from csdseg.evaluation.metrics import confusion_matrix, iou_per_class
from csdseg.stages import eval_cam, make_cam, make_csd_masks, make_ir_label, train_cam

PRESET = Path(__file__).resolve().parents[1] / "csdseg/config/presets/synthetic_irn.yaml"
# the benchmark's data (generate's arguments); csd_study.py makes the same when it starts first
DATA = {"n_train": 1000, "n_val": 250, "size": 128, "data_seed": 0}
COUPLED = ["aeroplane", "bird", "boat", "train", "cow", "horse", "sheep"]


def confident_label_miou(cfg: Config) -> dict:
    """mIoU of the confident labels on their confident pixels, and the share they cover."""
    make_ir_label.run(cfg)
    source = build_source(cfg.data, cfg.data.infer_split)
    conf, covered, valid = 0, 0, 0
    for image_id in source.ids:
        gt = source.load_mask(image_id).astype(np.int64)
        label = read_label_png(cfg.run_dir / "ir_label" / f"{image_id}.png", source.num_classes,
                               gt.shape, made_by="make-ir-label").astype(np.int64)
        keep = (label != 255) & (gt != 255)
        conf = conf + confusion_matrix(gt[keep], label[keep], source.num_classes + 1)
        covered += int(keep.sum())
        valid += int((gt != 255).sum())
    return {"miou": float(np.nanmean(iou_per_class(conf))), "coverage": covered / valid}


def evaluate(cfg: Config) -> dict:
    out = {}
    for split in ("train", "val"):
        c = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, infer_split=split,
                                                               eval_split=split))
        make_cam.run(c)
        report = eval_cam.evaluate(c, progress=False)
        ctx = report["context"] or {}
        out[split] = {
            "miou": report["miou"], "best_miou": report["best"]["miou"],
            "best_threshold": report["best"]["threshold"],
            "ctx_matched": ctx.get("matched"), "ctx_other": ctx.get("other"),
            "ctx_ratio": ctx.get("ratio"),
            "coupled": {k: report["per_class"][k] for k in COUPLED},
            # the paper's premise (docs/method.md): single- vs multi-label images, co-occurrence
            "single_miou": report.get("single_miou"), "multi_miou": report.get("multi_miou"),
            "gap": report.get("single_multi_gap"),
            "cooc": (report.get("cooccurrence") or {}).get("mean"),
            "cooc_worst": (report.get("cooccurrence") or {}).get("worst"),
        }
    out["confident"] = confident_label_miou(cfg)
    return out


RUNS = ("base", "csd", "ctl")  # csd and ctl start from base's checkpoint


def run_part(root: Path, out: Path, seed: int, run: str, args: argparse.Namespace) -> dict:
    """One run of a seed, trained if needed and evaluated: ``{run: metrics}`` (csd also
    ``masks``: the quality of its masks)."""
    common = [f"data.root={root}", f"run_root={out}", f"seed={seed}", *args.overrides]
    preset = Path(args.preset)
    if run == "base":
        cfg = load_config(preset, [*common, f"name=base_s{seed}", f"train.epochs={args.epochs}"])
        result = {}
    else:
        warm = [f"train.init_from={out / f'base_s{seed}'}", f"train.epochs={args.extra_epochs}",
                f"optim.lr={args.extra_lr}"]
        csd = ["csd.enabled=true", f"csd.from_run=base_s{seed}"] if run == "csd" else []
        cfg = load_config(preset, [*common, f"name={run}_s{seed}", *warm, *csd])
        # CSD's masks in the CSD run's own folder (linked from base's confident labels)
        result = {"masks": make_csd_masks.run(cfg)} if run == "csd" else {}
    wall = {}  # seconds per phase, where this process did the work (docs/benchmarks.md)
    start = time.perf_counter()
    if not (cfg.run_dir / "checkpoints" / "cam.pt").is_file():
        train_cam.run(cfg)
        wall["train"] = time.perf_counter() - start
    start = time.perf_counter()
    metrics = evaluate(cfg)
    return {**result, run: {**metrics, "wall_s": {**wall, "evaluate": time.perf_counter() - start}}}


def part_path(out: Path, seed: int, run: str) -> Path:
    return out / f"part_{run}_s{seed}.json"


def run_seed(root: Path, out: Path, seed: int, args: argparse.Namespace,
             with_csd: bool = True) -> dict:
    """base, csd and ctl of one seed (``with_csd=False``: base and ctl, csd_study.py's), each
    run's result kept in its own file, so a killed seed resumes after its last finished run."""
    results = {}
    for run in (r for r in RUNS if with_csd or r != "csd"):
        path = part_path(out, seed, run)
        if not path.is_file():
            atomic_write_json(path, run_part(root, out, seed, run, args))
        results.update(json.loads(path.read_text()))
    return results


def run_parallel(out: Path, seeds: list[int], args: argparse.Namespace) -> None:
    """Every (seed, run) as its own process, ``--jobs`` at a time (experiments/job_pool.py): the
    same result files as the sequential path."""
    # this command line itself (no second list of the options to drift), less --jobs; the
    # later --seeds and --part win over the earlier ones
    rest, _ = split_overrides(sys.argv[1:])
    flags = [a for n, a in enumerate(rest) if not (a == "--jobs" or a.startswith("--jobs=")
                                                   or (n and rest[n - 1] == "--jobs"))]
    jobs = [Job(f"{run}_s{seed}", python_argv(__file__, *flags, "--seeds", str(seed),
                                              "--part", run, "--", *args.overrides),
                after=() if run == "base" else (f"base_s{seed}",),
                done=lambda p=part_path(out, seed, run): p.is_file())
            for seed in seeds if not (out / f"results_s{seed}.json").is_file() for run in RUNS]
    run_jobs(jobs, args.jobs, out / "logs")


ROWS = [("CAM mIoU @0.15, train", ["train", "miou"]),
        ("CAM mIoU best threshold, train", ["train", "best_miou"]),
        ("CAM mIoU @0.15, val", ["val", "miou"]),
        ("CAM mIoU best threshold, val", ["val", "best_miou"]),
        ("single-label images mIoU @0.15, train", ["train", "single_miou"]),
        ("multi-label images mIoU @0.15, train", ["train", "multi_miou"]),
        ("single - multi gap, train (lower: CSD's aim)", ["train", "gap"]),
        ("co-occurrence confusion, train (lower is better)", ["train", "cooc"]),
        ("co-occurrence confusion, val", ["val", "cooc"]),
        ("confident-label mIoU, train", ["confident", "miou"]),
        ("confident-label coverage, train", ["confident", "coverage"]),
        ("bg labelled fg, preferred context (train)", ["train", "ctx_matched"]),
        ("bg labelled fg, other context (train)", ["train", "ctx_other"]),
        ("over-activation ratio (train)", ["train", "ctx_ratio"])]
ROWS += [(f"IoU {k} @0.15, train", ["train", "coupled", k]) for k in COUPLED]


def value(res: dict, run: str, path: list[str]) -> float | None:
    v = res[run]
    for key in path:
        if v is None or key not in v:
            return None
        v = v[key]
    return None if v is None else (v if "ratio" in path[-1] else 100 * v)


def mean_std(values: list[float], ratio: bool) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    fmt = ".2f" if ratio else ".1f"
    return f"{statistics.mean(values):{fmt}} ± {std:{fmt}}"


def summarise(per_seed: dict[int, dict]) -> str:
    """baseline / control / CSD (mean ± std over seeds) and CSD - control, paired by seed:
    its mean ± its std over seeds, the seed noise every delta is read against."""
    lines = [f"| metric ({len(per_seed)} seeds, mean ± std) | baseline | control (+extra) "
             "| CSD (+extra) | CSD - control (paired) |", "|---|---|---|---|---|"]
    for label, path in ROWS:
        ratio = "ratio" in path[-1]
        cols = {run: [v for res in per_seed.values() if (v := value(res, run, path)) is not None]
                for run in ("base", "ctl", "csd")}
        diffs = [value(r, "csd", path) - value(r, "ctl", path) for r in per_seed.values()
                 if value(r, "csd", path) is not None and value(r, "ctl", path) is not None]
        if not any(cols.values()):
            continue
        delta = mean_std(diffs, ratio)
        lines.append(f"| {label} | {mean_std(cols['base'], ratio)} | {mean_std(cols['ctl'], ratio)}"
                     f" | {mean_std(cols['csd'], ratio)} | {'+' if delta[0] != '-' else ''}{delta} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/csd_experiment")
    parser.add_argument("--preset", default=str(PRESET), help="the baseline's config file")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    for key, value in DATA.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=value)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--extra-epochs", type=int, default=4)
    parser.add_argument("--extra-lr", type=float, default=0.01)
    parser.add_argument("--reevaluate", action="store_true",
                        help="redo the evaluation of finished runs (training is skipped)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs trained at once, one process each (one torch thread each "
                             "unless OMP_NUM_THREADS says otherwise); 1: one process, in order")
    parser.add_argument("--part", choices=RUNS, help=argparse.SUPPRESS)  # a --jobs child
    args = parse_args(parser)  # key=value overrides anywhere on the line
    out = Path(args.out)
    if args.part:  # one run of one seed, for run_parallel; the data exist already
        [seed] = args.seeds
        path = part_path(out, seed, args.part)
        if not path.is_file():
            atomic_write_json(path, run_part(out / "data", out, seed, args.part, args))
        return
    root = generate(out / "data", args.n_train, args.n_val, args.size, args.data_seed)
    start = time.time()
    per_seed = {}
    if args.reevaluate:  # new metrics on finished runs: only the evaluation is redone
        for seed in args.seeds:
            (out / f"results_s{seed}.json").unlink(missing_ok=True)
            for run in RUNS:
                part_path(out, seed, run).unlink(missing_ok=True)
    if args.jobs > 1:
        run_parallel(out, args.seeds, args)
    for seed in args.seeds:  # one file per seed, so seeds can run in parallel processes
        path = out / f"results_s{seed}.json"
        if not path.is_file():
            path.write_text(json.dumps(run_seed(root, out, seed, args), indent=1))
        per_seed[seed] = json.loads(path.read_text())
    print(f"\n{len(per_seed)} seeds, {time.time() - start:.0f} s; settings: {vars(args)}\n")
    print(summarise(per_seed))


if __name__ == "__main__":
    main()
