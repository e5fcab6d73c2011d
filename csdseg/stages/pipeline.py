"""``csdseg pipeline``: every stage of a run in order, skipping those already done.

  csdseg pipeline -c synthetic_irn --baseline-and-csd [--from STAGE] [--to STAGE]

Order: train-cam -> make-cam -> eval-cam [-> make-csd-masks (from the baseline's CAMs) ->
train-cam, make-cam, eval-cam of the CSD run ``<name>_csd``, warm-started from the baseline,
and of its control ``<name>_ctl``: the same warm start, epochs and learning rate, CSD off]
-> make-ir-label -> train-irn -> make-sem-seg -> eval-sem-seg -> train-seg -> eval-seg, for
each run. A stage whose outputs are complete is skipped (see docs/pipeline.md); at the end the
baseline / control / CSD table (with CSD - control) is printed, written to
``runs/<name>/reports/pipeline.{json,md}``, and the HTML report to ``runs/<name>/report.html``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from csdseg.config import Config, ConfigError, load_config
from csdseg.data import build_source
from csdseg.runs import RunDir, eval_report_path
from csdseg.stages.args import add_config_arguments

HELP = "run every stage (optionally baseline and CSD), skipping finished ones; print the table"
log = logging.getLogger("csdseg.pipeline")

# stage -> module; this order is the one --from/--to refer to
ORDER: dict[str, str] = {
    "train-cam": "csdseg.stages.train_cam",
    "make-cam": "csdseg.stages.make_cam",
    "eval-cam": "csdseg.stages.eval_cam",
    "make-csd-masks": "csdseg.stages.make_csd_masks",
    "make-ir-label": "csdseg.stages.make_ir_label",
    "train-irn": "csdseg.stages.train_irn",
    "make-sem-seg": "csdseg.stages.make_sem_seg",
    "eval-sem-seg": "csdseg.stages.eval_sem_seg",
    "train-seg": "csdseg.stages.train_seg",
    "eval-seg": "csdseg.stages.eval_seg",
}
CAM_STAGES = ["train-cam", "make-cam", "eval-cam"]
DOWNSTREAM = ["make-ir-label", "train-irn", "make-sem-seg", "eval-sem-seg", "train-seg", "eval-seg"]


@dataclass
class Step:
    stage: str
    cfg: Config  # cfg.name is the run the stage works on (and the only one it writes)


def finetune_config(path: str | None, overrides: list[str], with_csd: bool, epochs: int = 0,
                    extra: list[str] | None = None) -> Config:
    """A run warm-started from the baseline at the fine-tuning rate: ``<name>_csd`` with CSD
    on (masks from the baseline) or, with ``with_csd=False``, its control ``<name>_ctl``:
    the same warm start, epochs, learning rate and ``extra`` overrides, CSD off. Only the
    CSD switch differs, so CSD - control is CSD's own effect."""
    base = load_config(path, overrides)
    common = [f"train.init_from={base.run_dir}", f"train.epochs={epochs or base.train.epochs}",
              f"optim.lr={base.optim.lr * base.csd.finetune_lr_mult}", *(extra or [])]
    if with_csd:
        return load_config(path, [*overrides, f"name={base.name}_csd", f"csd.from_run={base.name}",
                                  *common, "csd.enabled=true"])
    return load_config(path, [*overrides, f"name={base.name}_ctl", *common, "csd.enabled=false"])


def csd_config(path: str | None, overrides: list[str], epochs: int = 0,
               extra: list[str] | None = None) -> Config:
    return finetune_config(path, overrides, True, epochs, extra)


def control_config(path: str | None, overrides: list[str], epochs: int = 0,
                   extra: list[str] | None = None) -> Config:
    return finetune_config(path, overrides, False, epochs, extra)


def plan(base: Config, csd: Config | None, control: Config | None = None) -> list[Step]:
    """The steps in execution order: every run's CAM stages first (CSD needs the baseline's
    CAMs; the baseline's confident labels come right after them, so make-csd-masks can link
    them instead of redoing the CRFs), then each run's downstream stages: baseline, control,
    CSD."""
    steps = [Step(s, base) for s in CAM_STAGES]
    if csd is not None:
        steps += [Step("make-ir-label", base), Step("make-csd-masks", csd)]
        steps += [Step(s, csd) for s in CAM_STAGES]
    if control is not None:
        steps += [Step(s, control) for s in CAM_STAGES]
    for cfg in [base, control, csd]:
        if cfg is not None:
            early = {"make-ir-label"} if cfg is base and csd is not None else set()
            steps += [Step(s, cfg) for s in DOWNSTREAM if s not in early]
    return steps


# --------------------------------------------------------------------------------------------
# Skip rules: a stage is done when its outputs are complete (and reports newer than inputs)


def _complete(folder: Path, ids: list[str], ext: str) -> bool:
    return folder.is_dir() and all((folder / f"{i}{ext}").is_file() for i in ids)


def _fresh(report: Path, inputs: list[Path]) -> bool:
    """``report`` exists and is at least as new as every input (all of which exist)."""
    if not report.is_file() or not all(p.is_file() for p in inputs):
        return False
    newest = max((p.stat().st_mtime for p in inputs), default=0.0)
    return report.stat().st_mtime >= newest


def done_reason(stage: str, cfg: Config) -> str | None:
    """Why ``stage`` can be skipped for ``cfg`` (a short phrase), or None when it must run."""
    rd = RunDir.from_config(cfg)
    ids = lambda split: build_source(cfg.data, split).ids  # noqa: E731 - built only when asked
    if stage in ("train-cam", "train-irn", "train-seg"):
        ckpt = rd.checkpoint({"train-cam": "cam", "train-irn": "irn", "train-seg": "seg"}[stage])
        if stage == "train-irn" and cfg.irn.method == "crf":
            return "not needed (irn.method=crf)"
        return f"{ckpt.relative_to(rd.root)} present" if ckpt.is_file() and ckpt.stat().st_size \
            else None
    if stage in ("make-cam", "make-ir-label", "make-sem-seg"):
        folder, ext = {"make-cam": (rd.cam_dir, ".npy"), "make-ir-label": (rd.ir_label_dir, ".png"),
                       "make-sem-seg": (rd.sem_seg_dir, ".png")}[stage]
        split = cfg.data.infer_split
        complete = _complete(folder, ids(split), ext)
        return f"every {split} file in {folder.name}/" if complete else None
    if stage == "make-csd-masks":  # where train-cam will read them (csdseg/csd/masks.py)
        from csdseg.csd.masks import mask_place

        source = build_source(cfg.data, cfg.data.train_split)
        folder = mask_place(cfg).folder
        if not _complete(folder, source.ids, ".png"):
            return None
        if source.has_masks() and not rd.report("make_csd_masks").is_file():
            return None
        return f"every {cfg.data.train_split} mask in {folder.name}/"
    if stage == "eval-cam":
        inputs = [rd.cam_dir / f"{i}.npy" for i in ids(cfg.data.eval_split)]
    elif stage == "eval-sem-seg":
        inputs = [rd.sem_seg_dir / f"{i}.png" for i in ids(cfg.data.eval_split)]
    elif stage == "eval-seg":
        inputs = [rd.checkpoint("seg")]
    else:
        raise ConfigError(f"unknown stage '{stage}'; stages: {', '.join(ORDER)}")
    report = eval_report_path(cfg, stage.replace("-", "_"))
    return "report newer than its inputs" if _fresh(report, inputs) else None


def run_stage(stage: str, cfg: Config) -> None:
    module = importlib.import_module(ORDER[stage])
    if stage in ("eval-cam", "eval-sem-seg", "eval-seg"):  # the final table shows the numbers
        report = module.evaluate(cfg, progress=False)
        best = report.get("best") or {}
        log.info("%s %s: mIoU %.4f%s", cfg.name, stage, report["miou"] or 0.0,
                 f" (best {best['miou']:.4f} at {best['threshold']:.2f})" if best else "")
    else:
        module.run(cfg)


def rank(stage: str) -> int:
    """Position for --from/--to. make-csd-masks is the first step of the CSD run's
    train-cam, so it goes wherever train-cam goes (``--to eval-cam`` includes it)."""
    return list(ORDER).index("train-cam" if stage == "make-csd-masks" else stage)


def execute(steps: list[Step], start: str | None = None, stop: str | None = None,
            echo: bool = True) -> list[dict[str, Any]]:
    """Run the steps between ``start`` and ``stop`` (stage names, inclusive) that are not done.

    Returns one record per step: run, stage, status (ran | skipped | not needed |
    not selected) and why.
    """
    for flag, value in (("--from", start), ("--to", stop)):
        if value is not None and value not in ORDER:
            raise ConfigError(f"{flag} {value}: not a pipeline stage; stages: {', '.join(ORDER)}")
    lo = rank(start) if start else 0
    hi = rank(stop) if stop else len(ORDER) - 1
    if lo > hi:
        raise ConfigError(f"--from {start} comes after --to {stop} in the stage order")
    records = []
    for step in steps:
        record: dict[str, Any] = {"run": step.cfg.name, "stage": step.stage}
        if not lo <= rank(step.stage) <= hi:
            record.update(status="not selected", why="outside --from/--to")
        elif (why := done_reason(step.stage, step.cfg)) is not None:
            needed = not why.startswith("not needed")
            record.update(status="skipped" if needed else "not needed",
                          why=why if needed else why[len("not needed ("):-1])
        else:
            t0 = time.time()
            if echo:
                print(f"[pipeline] {step.cfg.name}: {step.stage} ...", flush=True)
            run_stage(step.stage, step.cfg)
            record.update(status="ran", why=f"{time.time() - t0:.1f} s")
        if echo and record["status"] != "not selected":
            print(f"[pipeline] {step.cfg.name}: {step.stage:<15} {record['status']} "
                  f"({record['why']})", flush=True)
        records.append(record)
    return records


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--from", dest="start", metavar="STAGE", choices=list(ORDER),
                        help="first stage to run (earlier ones are left alone)")
    parser.add_argument("--to", dest="stop", metavar="STAGE", choices=list(ORDER),
                        help="last stage to run")
    parser.add_argument("--baseline-and-csd", action="store_true",
                        help="also train the CSD run <name>_csd and its control <name>_ctl (the "
                             "same warm start and epochs, CSD off) and compare the three")
    parser.add_argument("--csd-epochs", type=int, default=0,
                        help="train.epochs of the CSD run and its control (warm-started; 0 = "
                             "the baseline's)")
    parser.add_argument("--csd-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override for the CSD run and its control, e.g. "
                             "csd.lambda_bg=0.2 (repeatable; csd.enabled stays off in the "
                             "control)")
    parser.add_argument("--gallery", type=int, default=8, help="images in the HTML report")
    parser.add_argument("--no-report", action="store_true", help="skip the HTML report")


def run_pipeline(path: str | None, overrides: list[str], baseline_and_csd: bool = False,
                 start: str | None = None, stop: str | None = None, csd_epochs: int = 0,
                 csd_set: list[str] | None = None, gallery: int = 8,
                 report: bool = True) -> dict[str, Any]:
    """Plan, execute, summarise; returns {"steps": records, "table": rows, "report": path}."""
    from csdseg.report.table import write_table

    base = load_config(path, overrides)
    csd = control = None
    if baseline_and_csd:
        from csdseg.csd.variants import resolve_variant

        csd = csd_config(path, overrides, csd_epochs, csd_set)
        control = control_config(path, overrides, csd_epochs, csd_set)
        if resolve_variant(csd.csd).masks == "final" and not csd.csd.mask_source:
            raise ConfigError(
                "--baseline-and-csd does not support csd.masks=final (csd.variant=authors) "
                "yet: those masks are the baseline's pseudo-masks, which the pipeline makes "
                "only after the CSD run's CAM stages. Run the baseline's stages first, then "
                "pass --csd-set csd.mask_source=runs/<name>/sem_seg (or csd.masks=confident)")
    records = execute(plan(base, csd, control), start, stop)
    from csdseg import run_lock

    if run_lock.is_writer():  # the table and report go into the baseline's run folder
        run_lock.acquire(RunDir.from_config(base).root, "pipeline")
    table, markdown = write_table(base, control, csd)
    print(markdown)
    html = None
    if report:
        from csdseg.report.html import build_report

        html = build_report(base, control, csd, table, n_gallery=gallery)
        print(f"[pipeline] report: {html}")
    return {"steps": records, "table": table, "report": html,
            "names": {"baseline": base.name, "control": control.name if control else None,
                      "csd": csd.name if csd else None}}


def main(args: argparse.Namespace) -> int:
    run_pipeline(args.config, args.overrides, args.baseline_and_csd, args.start, args.stop,
                 args.csd_epochs, args.csd_set, args.gallery, not args.no_report)
    return 0
