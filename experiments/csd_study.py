"""The pre-registered CSD study (docs/csd_study.md): named settings against the control.

Runs live beside those of experiments/csd_experiment.py (same ``--out``, same data, same
``base_s<seed>`` warm start and ``ctl_s<seed>`` control). Three commands:

  python experiments/csd_study.py base --out OUT --seed 3           # baseline + control of a seed
  python experiments/csd_study.py run --out OUT --seed 0 --setting authors_x10 [--eval train]
  python experiments/csd_study.py table --out OUT --seeds 0 [--select]
  python experiments/csd_study.py confirm --out OUT --seeds 3 4 5 --setting ours_x1  # full table

``run`` trains ``study_<setting>_s<seed>`` warm-started from ``base_s<seed>`` with the
setting's overrides (the masks it needs are made first: ``masks=final`` trains the baseline's
IRN and writes its pseudo-masks on the train split), evaluates it and writes
``<out>/study_<setting>_s<seed>.json``. ``table`` prints every setting's CSD - control, paired
by seed, and with ``--select`` applies the selection rule written in docs/csd_study.md before any run.
Everything skips what is finished, so a killed command resumes. One command per table:
``table --run --settings A B --seeds 0 --eval train`` and ``confirm --run --setting A --seeds
3 4 5`` first make what is missing of each seed (``base``, then each setting's ``run``). ``--preset`` as in
csd_experiment.py (``synthetic_mct`` with ``--extra-lr 1e-4`` for MCTformer).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

from csdseg.stages.args import parse_args
from csd_experiment import DATA, PRESET, evaluate, run_seed, summarise
from csdseg.config import Config, load_config
from csdseg.data.synthetic import generate
from csdseg.csd.masks import mask_place
from csdseg.engine.logger import read_log
from csdseg.files.atomic import atomic_write_text
from csdseg.runs import RunDir
from csdseg.refiners import get_refiner
from csdseg.stages import eval_cam, make_cam, make_csd_masks, make_sem_seg, train_cam
from csdseg.stages.pipeline import run_stage

PAPER = {"fg": 0.01, "bg": 0.1}  # lambda1, lambda2


def dose(k: float) -> list[str]:
    return [f"csd.lambda_fg={PAPER['fg'] * k:g}", f"csd.lambda_bg={PAPER['bg'] * k:g}"]


# The screened settings (docs/csd_study.md); "ours_x1" is csd_experiment.py's csd_s<seed>.
SETTINGS: dict[str, list[str]] = {
    "ours_x1": [],
    "ours_x10": dose(10),
    "ours_x100": dose(100),
    "ours_x10_frozen": [*dose(10), "csd.teacher=frozen"],
    "authors_x1": ["csd.variant=authors"],
    "authors_x10": ["csd.variant=authors", *dose(10)],
    "authors_x100": ["csd.variant=authors", *dose(100)],
    # round 4: one axis at a time at the paper's lambdas, everything else ours_x1
    "ours_x1_final": ["csd.masks=final"],          # mask source: the baseline's final masks
    "ours_x1_pasted": ["csd.kl_channels=pasted"],  # KL over the pasted channels only
    "ours_x1_random": ["csd.fg_paste=random"],     # X_s rescaled and moved before pasting
    "ours_x1_ema": ["csd.teacher=ema"],            # teacher: an EMA copy of the student
    # round 9 (issue 31): csdseg's extension, the dual paste for single-object photos too,
    # partner drawn by shared background context (docs/csd.md)
    "context_all": ["csd.apply_to=all", "csd.pair_by=context"],
}


def config(args: argparse.Namespace, seed: int, name: str, *extra: str) -> Config:
    out = Path(args.out)
    return load_config(Path(args.preset), [f"data.root={out / 'data'}", f"run_root={out}",
                                           f"seed={seed}", f"name={name}", *args.overrides,
                                           *extra])


def ensure_final_masks(args: argparse.Namespace, seed: int) -> None:
    """The baseline's pseudo-masks on the train split (the authors' X_s / X_m masks)."""
    base = config(args, seed, f"base_s{seed}")
    train = dataclasses.replace(base, data=dataclasses.replace(
        base.data, infer_split=base.data.train_split))
    make_cam.run(train)  # present already after csd_experiment's evaluation: skipped
    # the preset's own refiner, trained by its own stage if it needs one (synthetic_mct's
    # CAM + CRF needs none: round 3 ran train-irn there regardless, and failed)
    refiner = get_refiner(train.refine.method)
    if refiner.trained_by and not RunDir.from_config(train).checkpoint(refiner.checkpoint).is_file():
        run_stage(refiner.trained_by, train)
    make_sem_seg.run(train)  # skips the masks already written


def run_setting(args: argparse.Namespace) -> dict:
    seed, out = args.seed, Path(args.out)
    base = out / f"base_s{seed}"
    if not (base / "checkpoints" / "cam.pt").is_file():
        raise SystemExit(f"{base} has no checkpoint: run `csd_study.py base --seed {seed}`")
    cfg = config(args, seed, f"study_{args.setting}_s{seed}", f"train.init_from={base}",
                 f"train.epochs={args.extra_epochs}", f"optim.lr={args.extra_lr}",
                 "csd.enabled=true", f"csd.from_run=base_s{seed}", *SETTINGS[args.setting])
    if not mask_place(cfg).made_here:
        ensure_final_masks(args, seed)
    make_csd_masks.run(cfg)
    wall, start = {}, time.perf_counter()  # seconds per phase done by this process
    if not (cfg.run_dir / "checkpoints" / "cam.pt").is_file():
        train_cam.run(cfg)
        wall["train"] = time.perf_counter() - start
    start = time.perf_counter()
    if args.eval == "train":  # the screen: the selection rule reads train metrics only
        c = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, eval_split="train"))
        make_cam.run(c)
        report = eval_cam.evaluate(c, progress=False)
        result = {"train": {"miou": report["miou"], "best_miou": report["best"]["miou"],
                            "gap": report.get("single_multi_gap"),
                            "single_miou": report.get("single_miou"),
                            "multi_miou": report.get("multi_miou"),
                            "cooc": (report.get("cooccurrence") or {}).get("mean"),
                            "ctx_matched": (report["context"] or {}).get("matched")}}
    else:
        result = evaluate(cfg)
    result["wall_s"] = {**wall, "evaluate": time.perf_counter() - start}
    result["final_step"] = last_step(cfg.run_dir)
    result["setting"] = {"name": args.setting, "overrides": SETTINGS[args.setting]}
    return result


def last_step(run: Path) -> dict:
    """The training log's last step (classification loss, dead-CAM share at the end) and the
    dead-CAM share averaged over the last epoch's logged steps: one step's share holds ~20
    present classes on MCTformer, so one dead map reads 4.8% (round 5's rule reads the mean)."""
    steps = read_log(run / "logs" / "train_cam.jsonl", "step")
    last = steps[-1] if steps else {}
    summary = {k: last.get(k) for k in ("loss_cls", "dead_cam_share", "loss_fg", "loss_bg")}
    epoch = [r["dead_cam_share"] for r in steps
             if r.get("epoch") == last.get("epoch") and r.get("dead_cam_share") is not None]
    summary["dead_cam_share_last_epoch"] = statistics.mean(epoch) if epoch else None
    return summary


# ---- the table and the rule -----------------------------------------------------------------
ROWS = [("CAM mIoU @0.15, train", "miou"), ("CAM mIoU best threshold, train", "best_miou"),
        ("single - multi gap, train", "gap"), ("co-occurrence confusion, train", "cooc"),
        ("bg labelled fg, preferred context", "ctx_matched")]


def load_runs(out: Path, seeds: list[int]) -> tuple[dict, dict]:
    """{seed: control's metrics}, {setting: {seed: its metrics}} from the files on disk."""
    controls, settings = {}, {}
    for seed in seeds:
        res = out / f"results_s{seed}.json"
        if res.is_file():
            data = json.loads(res.read_text())
            controls[seed] = data["ctl"]
            if "csd" in data:  # csd_experiment.py's own CSD run: the literal setting
                settings.setdefault("ours_x1", {})[seed] = {
                    **data["csd"], "final_step": last_step(out / f"csd_s{seed}")}
        for path in sorted(out.glob(f"study_*_s{seed}.json")):
            data = json.loads(path.read_text())
            if (run := out / path.stem).is_dir():  # re-read: results older than a summary key
                data["final_step"] = last_step(run)
            settings.setdefault(data["setting"]["name"], {})[seed] = data
    return controls, settings


def paired(controls: dict, runs: dict, key: str) -> list[float]:
    return [100 * (r["train"][key] - controls[s]["train"][key]) for s, r in runs.items()
            if s in controls and r["train"].get(key) is not None
            and controls[s]["train"].get(key) is not None]


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):+.1f} ± {std:.1f}"


def dead_share(runs: dict) -> float | None:
    """Mean over seeds of the dead-CAM share over the last epoch (round 5's rule)."""
    key = "dead_cam_share_last_epoch"
    shares = [r["final_step"][key] for r in runs.values()
              if r.get("final_step") and r["final_step"].get(key) is not None]
    return statistics.mean(shares) if shares else None


def select(controls: dict, settings: dict) -> str:
    """docs/csd_study.md's rule: the largest mean reduction of co-occurrence confusion among the
    settings whose mean CAM mIoU @0.15 (train) is not below the control's and whose dead-CAM
    share over the last epoch stays under 5% (round 5; rounds 1-4 read the last logged step);
    none qualifies: the literal setting (ours_x1)."""
    best, best_cooc = "ours_x1", None
    for name, runs in settings.items():
        miou, cooc, dead = paired(controls, runs, "miou"), paired(controls, runs, "cooc"), \
            dead_share(runs)
        if not miou or not cooc or statistics.mean(miou) < 0 or (dead is not None and dead >= 0.05):
            continue
        if best_cooc is None or statistics.mean(cooc) < best_cooc:
            best, best_cooc = name, statistics.mean(cooc)
    return best


def table(args: argparse.Namespace) -> None:
    controls, settings = load_runs(Path(args.out), args.seeds)
    head = "| setting (CSD - control, paired; mean ± std over seeds) | seeds | " + \
        " | ".join(label for label, _ in ROWS) + " | dead-CAM share (last epoch) | loss_cls (end) |"
    print(head + "\n|" + "---|" * (len(ROWS) + 4))
    for name in SETTINGS:
        runs = settings.get(name)
        if not runs:
            continue
        cells = [fmt(paired(controls, runs, key)) for _, key in ROWS]
        dead = dead_share(runs)
        losses = [r["final_step"]["loss_cls"] for r in runs.values() if r.get("final_step")]
        print(f"| {name} | {','.join(map(str, sorted(runs)))} | {' | '.join(cells)} | "
              f"{'-' if dead is None else f'{100 * dead:.1f}%'} | "
              f"{f'{statistics.mean(losses):.3f}' if losses else '-'} |")
    print("\ncontrol, absolute (mean over these seeds): " + ", ".join(
        f"{label} {statistics.mean(100 * c['train'][key] for c in controls.values()):.1f}"
        for label, key in ROWS if all(c['train'].get(key) is not None for c in controls.values())))
    if args.select:
        print(f"\nselected by the pre-registered rule: {select(controls, settings)}")


def confirm(args: argparse.Namespace) -> None:
    """csd_experiment.py's full table (every metric, train and val, baseline / control / CSD,
    paired CSD - control) with ``--setting`` as the CSD run, on ``--seeds``."""
    out, per_seed = Path(args.out), {}
    for seed in args.seeds:
        res, run = out / f"results_s{seed}.json", out / f"study_{args.setting}_s{seed}.json"
        if res.is_file() and run.is_file():
            per_seed[seed] = {**json.loads(res.read_text()), "csd": json.loads(run.read_text())}
        elif res.is_file() and args.setting == "ours_x1":  # csd_experiment.py's own CSD run
            if "csd" in (data := json.loads(res.read_text())):
                per_seed[seed] = data
    print(f"{args.setting} against the control, seeds {sorted(per_seed)}\n")
    print(summarise(per_seed))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["base", "run", "table", "confirm"])
    parser.add_argument("--out", default="runs/csd_experiment")
    parser.add_argument("--preset", default=str(PRESET))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="ours_x1")
    parser.add_argument("--eval", choices=["train", "full"], default="full")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--extra-epochs", type=int, default=4)
    parser.add_argument("--extra-lr", type=float, default=0.01)
    parser.add_argument("--select", action="store_true")
    parser.add_argument("--run", action="store_true",
                        help="table / confirm: first run what is missing on --seeds")
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=[],
                        help="table --run: the settings to run on each seed")
    args = parse_args(parser, argv)
    if args.command in ("table", "confirm") and args.run:
        names = args.settings if args.command == "table" else [args.setting]
        if args.command == "confirm" and args.eval != "full":
            raise SystemExit("confirm --run needs the full evaluation: drop --eval train")
        for seed in args.seeds:
            make_base(args, seed)
            for name in names:
                make_setting(args, seed, name)
    if args.command == "table":
        return table(args)
    if args.command == "confirm":
        return confirm(args)
    if args.command == "base":  # baseline + control, csd_experiment's runs without its CSD run
        return make_base(args, args.seed)
    print(make_setting(args, args.seed, args.setting).read_text()[:400])


def make_base(args: argparse.Namespace, seed: int) -> Path:
    """``<out>/results_s<seed>.json``: the seed's baseline and control (skipped when present)."""
    out = Path(args.out)
    path = out / f"results_s{seed}.json"
    if not path.is_file():  # the data first, as csd_experiment.py makes them (resumes)
        generate(out / "data", DATA["n_train"], DATA["n_val"], DATA["size"], DATA["data_seed"])
        atomic_write_text(path, json.dumps(run_seed(out / "data", out, seed, args,
                                                    with_csd=False), indent=1))
    return path


def make_setting(args: argparse.Namespace, seed: int, setting: str) -> Path:
    """``<out>/study_<setting>_s<seed>.json`` (skipped when present)."""
    path = Path(args.out) / f"study_{setting}_s{seed}.json"
    if not path.is_file():
        one = argparse.Namespace(**{**vars(args), "seed": seed, "setting": setting})
        atomic_write_text(path, json.dumps(run_setting(one), indent=1))
    return path


if __name__ == "__main__":
    main()
