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
      reports/<stage>.json      evaluation reports
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
