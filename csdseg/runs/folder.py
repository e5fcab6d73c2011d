"""The run-directory contract: where every stage reads and writes.

Stages talk to each other only through these files, so any stage can be rerun alone::

    runs/<name>/
      configs/<stage>.yaml      resolved config each stage ran with
      checkpoints/cam.pt        final CAM classifier (cam_last.pt: resumable state)
      cam/<id>.npy              CAMs in IRN's format: keys, cam (stride 4), high_res
      ir_label/<id>.png         confident labels: classes, 0 = background, 255 = uncertain
      csd_masks/<id>.png        a CSD run's fg/bg masks: confident labels of its baseline's CAMs
      checkpoints/irn.pt        inter-pixel relation network
      sem_seg/<id>.png          pseudo-masks (VOC palette)
      checkpoints/seg.pt        segmentation network
      logs/<stage>.jsonl        one JSON object per logged step / epoch
      tb/<stage>/               TensorBoard event files
      reports/<stage>_<split>[_<variant>].json   evaluation reports, one per split (and per
                                variant: eval_seg with the dense CRF is ``eval_seg_val_crf``)
      reports/pipeline.{json,md}  the pipeline's baseline / control / CSD table
      .lock                     the process writing the run (csdseg/runs/lock.py), while it runs
"""
from __future__ import annotations

from pathlib import Path

from csdseg.config import Config, save_config
from csdseg.errors import MissingInputError  # defined in the leaf, which imports nothing back


class RunDir:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def from_config(cls, cfg: Config) -> "RunDir":
        return cls(cfg.run_dir)

    # --- locations -------------------------------------------------------------------------
    def checkpoint(self, name: str) -> Path:
        return self.root / "checkpoints" / f"{name}.pt"

    @property
    def cam_dir(self) -> Path:
        return self.root / "cam"

    @property
    def ir_label_dir(self) -> Path:
        return self.root / "ir_label"

    @property
    def csd_mask_dir(self) -> Path:
        """CSD's fg/bg masks for this (CSD) run, made from its baseline's CAMs."""
        return self.root / "csd_masks"

    @property
    def sem_seg_dir(self) -> Path:
        return self.root / "sem_seg"

    def _named(self, folder: str, stage: str, suffix: str = "") -> Path:
        """``<folder>/<stage><suffix>`` with the stage's file name (``make_cam``, never
        ``make-cam``); a run made before the names were made consistent keeps its old file."""
        path = self.root / folder / f"{stage.replace('-', '_')}{suffix}"
        legacy = self.root / folder / f"{stage}{suffix}"
        return legacy if not path.exists() and legacy.exists() else path

    def log(self, stage: str) -> Path:
        return self._named("logs", stage, ".jsonl")

    def tb(self, stage: str) -> Path:
        return self._named("tb", stage)

    def report(self, stage: str) -> Path:
        return self.root / "reports" / f"{stage}.json"

    def eval_report(self, stage: str, split: str, variant: str = "") -> Path:
        """An evaluation report: one file per (stage, split, variant), so evaluating another
        split never overwrites the first."""
        return self.report(f"{stage}_{split}" + (f"_{variant}" if variant else ""))

    def config(self, stage: str) -> Path:
        """The resolved config ``stage`` last started with (its fingerprint's source)."""
        return self._named("configs", stage, ".yaml")

    # --- helpers ---------------------------------------------------------------------------
    def start_stage(self, stage: str, cfg: Config) -> None:
        """Create the run directory, take its lock and record the config this stage runs with.

        Every stage that writes into the run calls this before its first write, so this is
        where "one writer per run" is enforced (:mod:`csdseg.runs.lock`): a second process on
        the same run stops here with a message naming the first. The lock is re-entrant (the
        pipeline runs every stage in one process) and released when the process exits. Under
        torchrun only rank 0 takes it. A read-only or full run folder fails here too, with a
        message naming the folder and its free space (:class:`csdseg.files.atomic.WriteError`).
        """
        from csdseg.runs import lock as run_lock
        from csdseg.files.atomic import ensure_dir

        ensure_dir(self.root, self.root / run_lock.LOCK_NAME)
        if run_lock.is_writer():
            run_lock.acquire(self.root, stage)
        save_config(cfg, self.config(stage))

    def release(self) -> None:
        """Drop this process's lock on the run before the process ends (tests, notebooks)."""
        from csdseg.runs import lock as run_lock

        run_lock.release(self.root)

    def require(self, path: Path, made_by: str) -> Path:
        """Refuse to start when an input is missing, saying which command makes it."""
        if not path.exists() or (path.is_dir() and not any(path.iterdir())):
            raise MissingInputError(f"{path} is missing or empty; run `csdseg {made_by}` first")
        return path


def eval_report_path(cfg: Config, stage: str) -> Path:
    """Where ``stage`` (eval_cam | eval_sem_seg | eval_seg) writes its report for ``cfg``."""
    run = RunDir.from_config(cfg)
    if stage == "eval_seg":
        return run.eval_report(stage, cfg.seg.eval_split, "crf" if cfg.seg.crf else "")
    if stage == "eval_sem_seg":  # one report per refiner: the random walk or CAM + CRF
        return run.eval_report(stage, cfg.data.eval_split, cfg.refine.method)
    if stage == "eval_cam":
        return run.eval_report(stage, cfg.data.eval_split)
    raise ValueError(f"{stage} is not an evaluation stage (eval_cam, eval_sem_seg, eval_seg)")
