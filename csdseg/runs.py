"""The run-directory contract: where every stage reads and writes.

Stages talk to each other only through these files, so any stage can be rerun alone::

    runs/<name>/
      configs/<stage>.yaml      resolved config each stage ran with
      checkpoints/cam.pt        final CAM classifier (cam_last.pt: resumable state)
      cam/<id>.npy              CAMs in IRN's format: keys, cam (stride 4), high_res
      ir_label/<id>.png         confident labels: classes, 0 = background, 255 = uncertain
      checkpoints/irn.pt        inter-pixel relation network
      sem_seg/<id>.png          pseudo-masks (VOC palette)
      checkpoints/seg.pt        segmentation network
      logs/<stage>.jsonl        one JSON object per logged step / epoch
      tb/<stage>/               TensorBoard event files
      reports/<stage>_<split>[_<variant>].json   evaluation reports, one per split (and per
                                variant: eval_seg with the dense CRF is ``eval_seg_val_crf``)
      reports/pipeline.{json,md}  the pipeline's baseline / control / CSD table
"""
from __future__ import annotations

from pathlib import Path

from csdseg.config import Config, save_config


class MissingInputError(FileNotFoundError):
    """A stage's input is absent; the message names it and the command that makes it."""


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
    def sem_seg_dir(self) -> Path:
        return self.root / "sem_seg"

    def log(self, stage: str) -> Path:
        return self.root / "logs" / f"{stage}.jsonl"

    def tb(self, stage: str) -> Path:
        return self.root / "tb" / stage

    def report(self, stage: str) -> Path:
        return self.root / "reports" / f"{stage}.json"

    def eval_report(self, stage: str, split: str, variant: str = "") -> Path:
        """An evaluation report: one file per (stage, split, variant), so evaluating another
        split never overwrites the first."""
        return self.report(f"{stage}_{split}" + (f"_{variant}" if variant else ""))

    def config(self, stage: str) -> Path:
        return self.root / "configs" / f"{stage}.yaml"

    # --- helpers ---------------------------------------------------------------------------
    def start_stage(self, stage: str, cfg: Config) -> None:
        """Create the run directory and record the config this stage runs with."""
        self.root.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.config(stage))

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
        return run.eval_report(stage, cfg.data.eval_split, cfg.irn.method)
    if stage == "eval_cam":
        return run.eval_report(stage, cfg.data.eval_split)
    raise ValueError(f"{stage} is not an evaluation stage (eval_cam, eval_sem_seg, eval_seg)")
