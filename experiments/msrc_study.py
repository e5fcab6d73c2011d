"""CSD against its control on real photos: MSRC-v2, preset msrc_irn (docs/csd_study.md, round 8).

For each seed, in ``--out``:
  base_s<seed>             the baseline (msrc_irn: Lite0 ImageNet weights, 8 epochs);
  ctl_s<seed>              the control: warm-started from base, ``--extra-epochs`` at the
                           fine-tuning rate (optim.lr x csd.finetune_lr_mult), CSD off;
  <setting>_s<seed>        the same warm start, epochs and rate with CSD on and the setting's
                           overrides (experiments/csd_study.py's SETTINGS).
Every run gets make-cam and eval-cam on the train split (IRN's protocol; the report carries the
context confusion, docs/method.md), and logs every step, so the CSD samples each epoch really
built are counted. Finished runs are skipped (a killed command resumes); one JSON per run.

  python experiments/msrc_study.py run --out runs/msrc_study --seeds 0 1 2 --settings ours_x1
  python experiments/msrc_study.py table --out runs/msrc_study --seeds 0 1 2 --settings ours_x1

Stages 2 and 3 (``downstream``): for each run of ``--seeds``, the pseudo-masks of every
refiner in ``--refiners`` (scored on train masks) and, for the runs in ``--deeplab``, DeepLab
trained on the random walk's masks (scored on val). ``ceiling`` trains the same DeepLab on the
true train masks (seg.pseudo_dir=gt), scored on val and on train. ``all`` does everything.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from csd_study import SETTINGS  # noqa: E402  (experiments/ is a folder of scripts)
from csdseg.runs import lock as run_lock  # noqa: E402
from csdseg.config import Config, load_config  # noqa: E402
from csdseg.engine.logger import read_log  # noqa: E402
from csdseg.files.atomic import atomic_write_json  # noqa: E402
from csdseg.stages import eval_cam, eval_sem_seg, eval_seg, make_cam, make_csd_masks, train_cam  # noqa: E402,E501
from csdseg.stages.pipeline import run_stage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "msrc_v2"


def config(args: argparse.Namespace, seed: int, run: str) -> Config:
    common = [f"data.root={args.root}", f"run_root={args.out}", f"seed={seed}", *args.overrides]
    if run == "base":
        return load_config("msrc_irn", [*common, f"name=base_s{seed}"])
    base = load_config("msrc_irn", [*common, f"name=base_s{seed}"])
    tune = [*common, f"name={run}_s{seed}", f"train.init_from={base.run_dir}",
            f"train.epochs={args.extra_epochs}",
            f"optim.lr={base.optim.lr * base.csd.finetune_lr_mult:g}", "train.log_every=1"]
    if run == "ctl":
        return load_config("msrc_irn", [*tune, "csd.enabled=false"])
    return load_config("msrc_irn", [*tune, "csd.enabled=true", f"csd.from_run=base_s{seed}",
                                    *SETTINGS[run]])


def per_epoch(cfg: Config) -> dict:
    """CSD samples built per epoch (the log has every step), dead-CAM share, last loss."""
    steps = read_log(cfg.run_dir / "logs" / "train_cam.jsonl", "step")
    epochs: dict[int, float] = {}
    for r in steps:
        epochs[r["epoch"]] = epochs.get(r["epoch"], 0.0) + r.get("csd_samples", 0.0)
    last = steps[-1] if steps else {}
    touched = [r.get("csd_samples", 0.0) > 0 for r in steps]
    return {"csd_samples_per_epoch": [epochs[e] for e in sorted(epochs)],
            "batches_touched": sum(touched) / len(touched) if touched else None,
            "loss_cls": last.get("loss_cls"), "dead_cam_share": last.get("dead_cam_share")}


def summary(report: dict) -> dict:
    def pick(r: dict) -> dict:
        ctx = r.get("context_confusion") or {}
        return {"miou": r["miou"], "context_confusion": ctx.get("mean"),
                "worst_context": ctx.get("worst"), "cooc": (r.get("cooccurrence") or {}).get("mean"),
                "gap": r.get("single_multi_gap"), "per_class": r["per_class"],
                "precision": r.get("precision"), "recall": r.get("recall")}
    return {"fixed": pick(report), "best": {**pick(report["best"]),
                                            "threshold": report["best"]["threshold"]},
            "trivial": report.get("trivial"), "n_single": report.get("n_single"),
            "n_multi": report.get("n_multi")}


def run_one(args: argparse.Namespace, seed: int, run: str) -> dict:
    cfg = config(args, seed, run)
    out = Path(args.out) / f"result_{run}_s{seed}.json"
    if out.is_file():
        return json.loads(out.read_text())
    if run not in ("base", "ctl"):
        base = Path(args.out) / f"result_base_s{seed}.json"
        while not base.is_file():  # another process trains the baseline: wait for it
            time.sleep(30)
        make_csd_masks.run(cfg)
    if not (cfg.run_dir / "checkpoints" / "cam.pt").is_file():
        train_cam.run(cfg)
    make_cam.run(cfg)
    result = {"run": run, "seed": seed, **summary(eval_cam.evaluate(cfg, progress=False)),
              **per_epoch(cfg), "overrides": SETTINGS.get(run, [])}
    atomic_write_json(out, result)
    run_lock.release(cfg.run_dir)  # a process is a run's writer until it exits: hand it over
    return result


def seg_summary(report: dict) -> dict:
    ctx = report.get("context_confusion") or {}
    return {"miou": report["miou"], "context_confusion": ctx.get("mean"),
            "worst_context": ctx.get("worst"), "per_class": report["per_class"]}


def downstream(args: argparse.Namespace, seed: int, run: str) -> dict:
    """Pseudo-masks of each refiner (train masks) and, if asked, DeepLab on the walk's (val)."""
    out = Path(args.out) / f"result_{run}_s{seed}.json"
    while not out.is_file():  # another process trains and scores the run's classifier
        time.sleep(30)
    result = json.loads(out.read_text())
    # the run has one sem_seg/ folder: the other refiners first, each moved aside to
    # sem_seg_<method>/ once scored, the random walk last, whose masks DeepLab trains on
    run_cfg = config(args, seed, run)
    for method in sorted(args.refiners, key=lambda m: m == "rw"):
        key = f"pseudo_{method}"
        if key in result:
            continue
        cfg = dataclasses.replace(run_cfg, refine=dataclasses.replace(run_cfg.refine,
                                                                     method=method))
        folder = cfg.run_dir / "sem_seg"
        if method != "rw" and folder.is_dir():
            if "pseudo_rw" in result:
                raise SystemExit(f"{folder} holds the random walk's masks: move it to "
                                 f"sem_seg_rw/ before scoring {method} (see the loop's comment)")
            shutil.rmtree(folder)  # only this method's own masks, cut short by a kill
        wall = result.setdefault("wall_s", {})
        if method == "rw":
            wall["make-ir-label"] = timed(run_stage, "make-ir-label", cfg)
            wall["train-irn"] = timed(run_stage, "train-irn", cfg)
        wall[f"make-sem-seg ({method})"] = timed(run_stage, "make-sem-seg", cfg)
        result[key] = seg_summary(eval_sem_seg.evaluate(cfg, progress=False))
        if method != "rw":
            folder.rename(cfg.run_dir / f"sem_seg_{method}")
        atomic_write_json(out, result)
    if run in args.deeplab and "deeplab" not in result:
        cfg = run_cfg
        result.setdefault("wall_s", {})["train-seg"] = timed(run_stage, "train-seg", cfg)
        start = time.perf_counter()
        result["deeplab"] = seg_summary(eval_seg.evaluate(cfg, progress=False))
        result["wall_s"]["eval-seg"] = time.perf_counter() - start
        atomic_write_json(out, result)
    run_lock.release(run_cfg.run_dir)
    return result


def timed(fn, *args) -> float:
    """Seconds ``fn(*args)`` took (the machine's load is noted where the figures are quoted)."""
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def ceiling(args: argparse.Namespace) -> dict:
    """The same DeepLab on the true masks of the train split: val and train mIoU."""
    out = Path(args.out) / "result_ceiling.json"
    if out.is_file():
        return json.loads(out.read_text())
    cfg = load_config("msrc_irn", [f"data.root={args.root}", f"run_root={args.out}", "seed=0",
                                   "name=ceiling", "seg.pseudo_dir=gt", *args.overrides])
    run_stage("train-seg", cfg)
    result = {split: seg_summary(eval_seg.evaluate(cfg, split=split, progress=False))
              for split in ("val", "train")}
    atomic_write_json(out, result)
    return result


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):+.1f} ± {std:.1f}"


def _get(result: dict, path: str) -> float | None:
    value = result
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


ROWS = [("CAM mIoU @0.15", "fixed.miou"), ("CAM mIoU, best threshold", "best.miou"),
        ("CAM context confusion @0.15 (lower better)", "fixed.context_confusion"),
        ("CAM context confusion, best threshold", "best.context_confusion"),
        ("CAM co-occurrence confusion @0.15", "fixed.cooc"),
        ("CAM single - multi gap @0.15", "fixed.gap"),
        ("pseudo-mask mIoU, random walk", "pseudo_rw.miou"),
        ("pseudo-mask context confusion, random walk", "pseudo_rw.context_confusion"),
        ("pseudo-mask mIoU, CAM + CRF", "pseudo_crf.miou"),
        ("pseudo-mask context confusion, CAM + CRF", "pseudo_crf.context_confusion"),
        ("DeepLab mIoU (val)", "deeplab.miou"),
        ("DeepLab context confusion (val)", "deeplab.context_confusion")]


def table(args: argparse.Namespace) -> str:
    out = Path(args.out)
    res = {p.stem[len("result_"):]: json.loads(p.read_text()) for p in out.glob("result_*_s*.json")}
    runs = ["base", "ctl", *args.settings]
    head = ["metric (%; train masks unless val)", *(f"{r} (mean ± std)" for r in runs),
            *(f"{s} - ctl (paired)" for s in args.settings)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, path in ROWS:
        cells = [label]
        for r in runs:
            vals = [100 * v for s in args.seeds
                    if (v := _get(res.get(f"{r}_s{s}", {}), path)) is not None]
            cells.append(fmt(vals).lstrip("+") + f" (n={len(vals)})" if vals else "-")
        for setting in args.settings:
            diffs = [100 * (a - b) for s in args.seeds
                     if (a := _get(res.get(f"{setting}_s{s}", {}), path)) is not None
                     and (b := _get(res.get(f"ctl_s{s}", {}), path)) is not None]
            cells.append(fmt(diffs))
        if any(c != "-" for c in cells[1:]):
            lines.append("| " + " | ".join(cells) + " |")
    ceiling_file = out / "result_ceiling.json"
    if ceiling_file.is_file():
        ceil = json.loads(ceiling_file.read_text())
        lines.append(f"\nceiling (the same DeepLab on the true train masks): val mIoU "
                     f"{100 * ceil['val']['miou']:.1f}, train mIoU {100 * ceil['train']['miou']:.1f}, "
                     f"val context confusion {100 * (ceil['val']['context_confusion'] or 0):.1f}")
        for r in runs:
            vals = [v for s in args.seeds if (v := _get(res.get(f"{r}_s{s}", {}),
                                                        "deeplab.miou")) is not None]
            if vals:
                lines.append(f"{r}: DeepLab val mIoU {100 * statistics.mean(vals):.1f} = "
                             f"{100 * statistics.mean(vals) / ceil['val']['miou']:.0f}% of the "
                             f"ceiling (n={len(vals)})")
    for setting in args.settings:
        for s in args.seeds:
            if f"{setting}_s{s}" in res:
                r = res[f"{setting}_s{s}"]
                lines.append(f"{setting} seed {s}: CSD samples per epoch "
                             f"{r['csd_samples_per_epoch']}, batches touched "
                             f"{100 * (r['batches_touched'] or 0):.0f}%")
    any_run = next(iter(res.values()), None)
    if any_run:
        t = any_run["trivial"]
        lines.append(f"trivial predictors (train): whole image {100 * t['whole_image']:.1f}, "
                     f"all background {100 * t['all_background']:.1f}; {any_run['n_single']} "
                     f"single-object, {any_run['n_multi']} multi-object images")
    text = "\n".join(lines)
    print(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "downstream", "ceiling", "all", "table"])
    parser.add_argument("--out", default="runs/msrc_study")
    parser.add_argument("--root", default=str(ROOT.resolve()))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="*", default=["ours_x1"], choices=list(SETTINGS))
    parser.add_argument("--extra-epochs", type=int, default=3)
    parser.add_argument("--settings-only", action="store_true",
                        help="run: only the CSD settings (the baselines come from another process)")
    parser.add_argument("--refiners", nargs="*", default=["rw", "crf"])
    parser.add_argument("--deeplab", nargs="*", default=["base"],
                        help="runs (base, ctl or a setting) that get DeepLab in downstream")
    parser.add_argument("--runs", nargs="+", help="downstream: only these runs (e.g. ctl "
                        "context_all); default base, ctl and the settings")
    parser.add_argument("overrides", nargs="*", help="key=value for every run")
    args, rest = parser.parse_known_args()  # key=value overrides may follow any option
    if any("=" not in r for r in rest):
        parser.error(f"unrecognized arguments: {' '.join(r for r in rest if '=' not in r)}")
    args.overrides += rest
    runs = ["base", "ctl", *args.settings]
    if args.command in ("run", "all"):
        for seed in args.seeds:
            for run in args.settings if args.settings_only else runs:
                run_one(args, seed, run)
    if args.command in ("ceiling", "all"):
        ceiling(args)
    if args.command in ("downstream", "all"):
        for seed in args.seeds:
            for run in args.runs or runs:
                downstream(args, seed, run)
    table(args)


if __name__ == "__main__":
    main()
