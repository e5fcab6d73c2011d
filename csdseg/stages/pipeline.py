"""``csdseg pipeline``: every stage of a run in order, skipping those already done.

  csdseg pipeline -c synthetic_irn --baseline-and-csd [--from STAGE] [--to STAGE]

Order: train-cam -> make-cam -> eval-cam [-> make-csd-masks (from the baseline's CAMs) ->
train-cam, make-cam, eval-cam of the CSD run ``<name>_csd``, warm-started from the baseline,
and of its control ``<name>_ctl``: the same warm start, epochs and learning rate, CSD off]
-> make-ir-label -> train-irn / train-aff (whichever refine.method's refiner needs) ->
make-sem-seg -> eval-sem-seg -> train-seg -> eval-seg, for each run. A stage whose outputs
are complete is skipped (see docs/pipeline.md); at the end the baseline / control / CSD table
(with CSD - control) is printed, written to
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

from csdseg.config import Config, ConfigError, fingerprint, load_config
from csdseg.runs import RunDir
from csdseg.stages.args import add_config_arguments
from csdseg.stages.registry import BY_NAME, PIPELINE, fingerprint_keys

HELP = "run every stage (optionally baseline and CSD), skipping finished ones; print the table"
log = logging.getLogger("csdseg.pipeline")

# stage -> module, in the order --from/--to refer to: the registry's pipeline steps
ORDER: dict[str, str] = {name: BY_NAME[name].module for name in PIPELINE}
# the registry's order split where CSD's masks are made: each run's classifier stages before,
# its pseudo-mask and segmentation stages after (derived, so a new stage needs no edit here)
_MASKS = PIPELINE.index("make-csd-masks")
CAM_STAGES = PIPELINE[:_MASKS]
DOWNSTREAM = PIPELINE[_MASKS + 1:]


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
# Skip rules: a stage is done when its outputs are complete and were made with today's settings


def stale_reason(stage: str, cfg: Config) -> str | None:
    """Why the outputs ``stage`` holds for ``cfg`` no longer fit it, or None.

    Its recorded config (configs/<stage>.yaml) against the current one on the keys that shape
    its outputs (its own and its upstream stages', csdseg.config.fingerprint); and any input
    from another run (a warm start, a baseline's checkpoint) newer than that record."""
    rd, entry = RunDir.from_config(cfg), BY_NAME[stage]
    record = rd.config(stage)
    recorded = fingerprint.recorded_settings(record)
    if recorded is None:  # no record: outputs made by hand or by an older csdseg
        return None
    keys = fingerprint_keys(stage, cfg)
    now, then = (fingerprint.select(v, keys) for v in (fingerprint.settings(cfg), recorded))
    if fingerprint.digest(now) != fingerprint.digest(then):
        changed = fingerprint.difference(now, then)
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        return f"settings changed since it ran: {', '.join(changed[:3])}{more}"
    made_at = record.stat().st_mtime
    for path in entry.foreign(cfg):
        if path.exists() and path.stat().st_mtime > made_at:  # a file or a folder of outputs
            return f"{path} is newer than this stage's outputs"
    return None


def done_reason(stage: str, cfg: Config) -> str | None:
    """Why ``stage`` can be skipped for ``cfg`` (a short phrase), or None when it must run."""
    if stage not in BY_NAME or BY_NAME[stage].complete is None:
        raise ConfigError(f"unknown stage '{stage}'; stages: {', '.join(ORDER)}")
    entry = BY_NAME[stage]
    if (why := entry.needed(cfg)) is not None:
        return f"not needed ({why})"
    complete = entry.complete(cfg, RunDir.from_config(cfg))
    if complete is None or stale_reason(stage, cfg) is not None:
        return None
    return complete


def retire(stage: str, cfg: Config, why: str) -> list[Path]:
    """Move the outputs a stale stage left in its run folder to ``stale/<stage>-<time>/``
    (never deleted, never outside the run), so the rerun starts clean."""
    rd = RunDir.from_config(cfg)
    present = [p for p in BY_NAME[stage].made(rd) if p.exists() and rd.root in p.parents]
    if not present:
        return []
    dest = rd.root / "stale" / f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}"
    for path in present:
        target = dest / path.relative_to(rd.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    log.warning("%s: %s rerun (%s); its old outputs moved to %s", cfg.name, stage, why, dest)
    return present


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
            if (stale := stale_reason(step.stage, step.cfg)) is not None:
                moved = retire(step.stage, step.cfg, stale)
                if echo and moved:
                    print(f"[pipeline] {step.cfg.name}: {step.stage}: {stale}; "
                          f"outputs moved to stale/", flush=True)
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
    from csdseg.runs import lock as run_lock

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
