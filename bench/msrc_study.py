"""CSD against its control on real photos: MSRC-v2, preset msrc_irn (docs/csd_study.md, round 8).

For each seed, in ``--out``:
  base_s<seed>             the baseline (msrc_irn: Lite0 ImageNet weights, 8 epochs);
  ctl_s<seed>              the control: warm-started from base, ``--extra-epochs`` at the
                           fine-tuning rate (optim.lr x csd.finetune_lr_mult), CSD off;
  <setting>_s<seed>        the same warm start, epochs and rate with CSD on and the setting's
                           overrides (bench/csd_study.py's SETTINGS).
Every run gets make-cam and eval-cam on the train split (IRN's protocol; the report carries the
context confusion, docs/method.md), and logs every step, so the CSD samples each epoch really
built are counted. Finished runs are skipped (a killed command resumes); one JSON per run.

  python bench/msrc_study.py run --out runs/msrc_study --seeds 0 1 2 --settings ours_x1
  python bench/msrc_study.py table --out runs/msrc_study --seeds 0 1 2 --settings ours_x1
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from csd_study import SETTINGS  # noqa: E402  (bench/ is a folder of scripts)
from csdseg.config import Config, load_config  # noqa: E402
from csdseg.engine.logger import read_log  # noqa: E402
from csdseg.io import atomic_write_json  # noqa: E402
from csdseg.stages import eval_cam, make_cam, make_csd_masks, train_cam  # noqa: E402

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
        make_csd_masks.run(cfg)
    if not (cfg.run_dir / "checkpoints" / "cam.pt").is_file():
        train_cam.run(cfg)
    make_cam.run(cfg)
    result = {"run": run, "seed": seed, **summary(eval_cam.evaluate(cfg, progress=False)),
              **per_epoch(cfg), "overrides": SETTINGS.get(run, [])}
    atomic_write_json(out, result)
    return result


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):+.1f} ± {std:.1f}"


def table(args: argparse.Namespace) -> str:
    out = Path(args.out)
    res = {p.stem[len("result_"):]: json.loads(p.read_text()) for p in out.glob("result_*.json")}
    runs = ["base", "ctl", *args.settings]
    rows = [("CAM mIoU @0.15", "fixed", "miou"), ("CAM mIoU, best threshold", "best", "miou"),
            ("context confusion @0.15 (lower better)", "fixed", "context_confusion"),
            ("context confusion, best threshold", "best", "context_confusion"),
            ("co-occurrence confusion @0.15", "fixed", "cooc"),
            ("single - multi gap @0.15", "fixed", "gap")]
    head = ["metric (train, % )", *(f"{r} (mean ± std)" for r in runs),
            *(f"{s} - ctl (paired)" for s in args.settings)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, where, key in rows:
        cells = [label]
        for r in runs:
            vals = [100 * res[f"{r}_s{s}"][where][key] for s in args.seeds
                    if f"{r}_s{s}" in res and res[f"{r}_s{s}"][where][key] is not None]
            cells.append(fmt(vals).lstrip("+") + f" (n={len(vals)})")
        for setting in args.settings:
            diffs = [100 * (res[f"{setting}_s{s}"][where][key] - res[f"ctl_s{s}"][where][key])
                     for s in args.seeds if f"{setting}_s{s}" in res and f"ctl_s{s}" in res
                     and res[f"{setting}_s{s}"][where][key] is not None]
            cells.append(fmt(diffs))
        lines.append("| " + " | ".join(cells) + " |")
    for setting in args.settings:
        for s in args.seeds:
            if f"{setting}_s{s}" in res:
                r = res[f"{setting}_s{s}"]
                lines.append(f"\n{setting} seed {s}: CSD samples per epoch "
                             f"{r['csd_samples_per_epoch']}, batches touched "
                             f"{100 * (r['batches_touched'] or 0):.0f}%")
    any_run = next(iter(res.values()), None)
    if any_run:
        t = any_run["trivial"]
        lines.append(f"\ntrivial predictors (train): whole image {100 * t['whole_image']:.1f}, "
                     f"all background {100 * t['all_background']:.1f}; "
                     f"{any_run['n_single']} single-object, {any_run['n_multi']} multi-object images")
    text = "\n".join(lines)
    print(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "table"])
    parser.add_argument("--out", default="runs/msrc_study")
    parser.add_argument("--root", default=str(ROOT.resolve()))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="*", default=["ours_x1"], choices=list(SETTINGS))
    parser.add_argument("--extra-epochs", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="key=value for every run")
    args, rest = parser.parse_known_args()  # key=value overrides may follow any option
    if any("=" not in r for r in rest):
        parser.error(f"unrecognized arguments: {' '.join(r for r in rest if '=' not in r)}")
    args.overrides += rest
    if args.command == "run":
        for seed in args.seeds:
            for run in ["base", "ctl", *args.settings]:
                run_one(args, seed, run)
    table(args)


if __name__ == "__main__":
    main()
