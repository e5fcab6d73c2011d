"""Every ``csdseg`` command in one list: the CLI's help and the pipeline's order both read it.

A pipeline stage declares, as functions of the config, what it writes into its run folder and
which settings shape those outputs; from that the pipeline knows, for any stage, whether it is
done (outputs complete, made with today's settings: csdseg.config.fingerprint), what to move
aside when a setting changed, and which stages follow. Adding a stage is one module under
csdseg/stages (``HELP``, ``run(cfg)``, optionally ``add_arguments``/``main``) plus one entry here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from csdseg.config import Config
from csdseg.runs import RunDir, eval_report_path

Check = Callable[[Config, RunDir], "str | None"]


@dataclass(frozen=True)
class Stage:
    name: str  # the command: ``csdseg <name>``
    module: str  # HELP, run(cfg) [, add_arguments, main]
    keys: tuple[str, ...] = ()  # settings ("section" or "section.field") that shape its outputs
    upstream: tuple[str, ...] = ()  # stages of the same run whose outputs it reads
    complete: Check | None = None  # None: not a pipeline step; else why it is complete, or None
    made: Callable[[RunDir], list[Path]] = field(default=lambda rd: [])  # moved aside when stale
    # outputs of other runs it reads: newer than ours means ours are stale (a warm start)
    foreign: Callable[[Config], list[Path]] = field(default=lambda cfg: [])
    needed: Callable[[Config], "str | None"] = field(default=lambda cfg: None)  # why not needed


def _checkpoint(name: str) -> Check:
    def check(cfg: Config, rd: RunDir) -> str | None:
        path = rd.checkpoint(name)
        ok = path.is_file() and path.stat().st_size > 0
        return f"{path.relative_to(rd.root)} present" if ok else None
    return check


def _per_image(folder: Callable[[RunDir], Path], ext: str) -> Check:
    def check(cfg: Config, rd: RunDir) -> str | None:
        from csdseg.data import build_source

        split, where = cfg.data.infer_split, folder(rd)
        ids = build_source(cfg.data, split).ids
        ok = where.is_dir() and all((where / f"{i}{ext}").is_file() for i in ids)
        return f"every {split} file in {where.name}/" if ok else None
    return check


def _report(stage: str, inputs: Callable[[Config, RunDir], list[Path]]) -> Check:
    """A report is complete when it exists and is at least as new as every input."""
    def check(cfg: Config, rd: RunDir) -> str | None:
        report, paths = eval_report_path(cfg, stage), inputs(cfg, rd)
        if not report.is_file() or not all(p.is_file() for p in paths):
            return None
        newest = max((p.stat().st_mtime for p in paths), default=0.0)
        return "report newer than its inputs" if report.stat().st_mtime >= newest else None
    return check


def _split_files(folder: Callable[[RunDir], Path], ext: str) -> Callable:
    def inputs(cfg: Config, rd: RunDir) -> list[Path]:
        from csdseg.data import build_source

        return [folder(rd) / f"{i}{ext}" for i in build_source(cfg.data, cfg.data.eval_split).ids]
    return inputs


def _csd_masks(cfg: Config, rd: RunDir) -> str | None:
    """Where train-cam will read them (csdseg/csd/masks.py), every train image's mask, and
    the report scoring them when the split has ground truth."""
    from csdseg.csd.masks import mask_place
    from csdseg.data import build_source

    source = build_source(cfg.data, cfg.data.train_split)
    folder = mask_place(cfg).folder
    if not folder.is_dir() or not all((folder / f"{i}.png").is_file() for i in source.ids):
        return None
    if source.has_masks() and not rd.report("make_csd_masks").is_file():
        return None
    return f"every {cfg.data.train_split} mask in {folder.name}/"


def _warm_start(cfg: Config) -> list[Path]:
    """train.init_from: a .pt file or a run directory (its checkpoints/cam.pt)."""
    src = Path(cfg.train.init_from)
    if not cfg.train.init_from:
        return []
    return [src if src.suffix == ".pt" else RunDir(src).checkpoint("cam")]


def _baseline_outputs(cfg: Config) -> list[Path]:
    """The baseline's weights and its CAM folder: newer CAMs (another checkpoint, or a
    changed ``cam.*``: every CAM write renames into the folder and moves its mtime) make CSD's
    masks stale."""
    if cfg.csd.mask_source:
        return []
    base = RunDir(Path(cfg.run_root) / (cfg.csd.from_run or cfg.name))
    return [base.checkpoint("cam"), base.cam_dir]


def _logs(rd: RunDir, stage: str, *ckpts: str) -> list[Path]:
    return [*(rd.checkpoint(c) for c in ckpts), *(rd.checkpoint(f"{c}_last") for c in ckpts),
            rd.log(stage), rd.tb(stage)]


def _trained_for(stage: str) -> Callable[[Config], "str | None"]:
    """A refiner's training stage is needed only when ``refine.method``'s refiner is trained by it."""
    def needed(cfg: Config) -> str | None:
        from csdseg.refiners import needs_training

        return None if needs_training(cfg.refine.method) == stage else f"refine.method={cfg.refine.method}"
    return needed


TRAIN_KEYS = ("seed", "data", "model", "optim", "train", "csd")  # csd only when enabled
IRN_TRAIN = tuple(f"irn.{k}" for k in (
    "backbone", "pretrained", "epochs", "batch_size", "crop_size", "scale_range", "hflip", "lr",
    "dp_lr_mult", "weight_decay", "momentum", "poly_power", "max_steps", "path_radius",
    "backbone_from_cam", "train_backbone"))
PSA_TRAIN = tuple(f"psa.{k}" for k in (
    "network", "weights", "low_alpha", "high_alpha", "epochs", "batch_size", "crop_size", "lr",
    "head_lr_mult", "weight_decay", "momentum", "poly_power", "hflip", "colour_jitter",
    "max_steps"))
REFINE = tuple(f"refine.{k}" for k in ("method", "bg_threshold", "beta", "exp_times",
                                        "walk_radius", "crf_preset", "crf_bg_threshold")) + tuple(
    f"psa.{k}" for k in ("walk", "alpha", "bg_threshold", "beta", "logt"))
SEG_TRAIN = tuple(f"seg.{k}" for k in (
    "model", "backbone", "pretrained", "output_stride", "frozen_bn", "pseudo_dir", "epochs",
    "batch_size", "crop_size", "scale_range", "hflip", "lr", "head_lr_mult", "momentum",
    "weight_decay", "poly_power", "loss_at", "amp", "max_steps"))
SEG_EVAL = ("seg.scales", "seg.flip", "seg.crf", "seg.crf_preset")

STAGES: list[Stage] = [
    Stage("synth", "csdseg.stages.synth"),
    Stage("prepare", "csdseg.stages.prepare"),
    Stage("train-cam", "csdseg.stages.train_cam", TRAIN_KEYS, (), _checkpoint("cam"),
          lambda rd: _logs(rd, "train_cam", "cam"), _warm_start),
    Stage("make-cam", "csdseg.stages.make_cam", ("cam",), ("train-cam",),
          _per_image(lambda rd: rd.cam_dir, ".npy"), lambda rd: [rd.cam_dir]),
    Stage("eval-cam", "csdseg.stages.eval_cam", ("eval",), ("make-cam",),
          _report("eval_cam", _split_files(lambda rd: rd.cam_dir, ".npy"))),
    Stage("make-csd-masks", "csdseg.stages.make_csd_masks",
          ("ir_label", "csd.from_run", "csd.mask_source", "csd.masks", "csd.variant"), (),
          _csd_masks, lambda rd: [rd.csd_mask_dir], _baseline_outputs),
    # IRN's confident labels are read by train-irn alone (CSD's masks make their own when
    # the baseline has none), so other refiners skip them
    Stage("make-ir-label", "csdseg.stages.make_ir_label", ("ir_label",), ("make-cam",),
          _per_image(lambda rd: rd.ir_label_dir, ".png"), lambda rd: [rd.ir_label_dir],
          needed=_trained_for("train-irn")),
    Stage("show-csd", "csdseg.stages.show_csd"),
    Stage("train-irn", "csdseg.stages.train_irn", IRN_TRAIN, ("make-ir-label",),
          _checkpoint("irn"), lambda rd: _logs(rd, "train-irn", "irn"),
          needed=_trained_for("train-irn")),
    Stage("train-aff", "csdseg.stages.train_aff", PSA_TRAIN, ("make-cam",),
          _checkpoint("aff"), lambda rd: [*_logs(rd, "train_aff", "aff"), rd.root / "psa_scores"],
          needed=_trained_for("train-aff")),
    Stage("make-sem-seg", "csdseg.stages.make_sem_seg", REFINE,
          ("make-cam", "train-irn", "train-aff"),
          _per_image(lambda rd: rd.sem_seg_dir, ".png"), lambda rd: [rd.sem_seg_dir]),
    Stage("eval-sem-seg", "csdseg.stages.eval_sem_seg", (), ("make-sem-seg",),
          _report("eval_sem_seg", _split_files(lambda rd: rd.sem_seg_dir, ".png"))),
    Stage("train-seg", "csdseg.stages.train_seg", SEG_TRAIN, ("make-sem-seg",),
          _checkpoint("seg"), lambda rd: _logs(rd, "train_seg", "seg")),
    Stage("eval-seg", "csdseg.stages.eval_seg", SEG_EVAL, ("train-seg",),
          _report("eval_seg", lambda cfg, rd: [rd.checkpoint("seg")])),
    Stage("predict", "csdseg.stages.predict"),
    Stage("pipeline", "csdseg.stages.pipeline"),
    Stage("demo", "csdseg.stages.demo"),
]
BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
# The pipeline's steps in order (what --from / --to refer to)
PIPELINE: list[str] = [s.name for s in STAGES if s.complete is not None]


def fingerprint_keys(name: str, cfg: Config | None = None) -> tuple[str, ...]:
    """The stage's own keys and, transitively, its upstream stages' keys; given ``cfg``, an
    upstream stage it does not need (e.g. train-irn under ``refine.method=psa``) adds none,
    so IRN's settings do not rerun PSA's masks."""
    stage, keys = BY_NAME[name], []
    for up in stage.upstream:
        if cfg is not None and BY_NAME[up].needed(cfg) is not None:
            continue
        keys += [k for k in fingerprint_keys(up, cfg) if k not in keys]
    return (*keys, *(k for k in stage.keys if k not in keys))
