"""Where a CSD run's fg/bg masks live: one rule for train-cam, make-csd-masks and the pipeline.

- ``csd.mask_source=DIR``: that folder, used as it is (make-csd-masks only checks and scores);
- ``csd.masks=final`` (the authors' reading): ``csd.from_run``'s pseudo-masks ``sem_seg/``,
  the random walk's output, also used as they are;
- otherwise (ours): the CSD run's own ``csd_masks/``, confident labels of ``csd.from_run``'s
  CAMs that make-csd-masks makes (or links from the baseline's ``ir_label/``).

Torch-free, so the pipeline's skip rules can ask without loading a model.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from csdseg.config import Config
from csdseg.csd.variants import resolve_variant
from csdseg.runs import RunDir


@dataclass(frozen=True)
class MaskPlace:
    folder: Path
    made_here: bool  # True: make-csd-masks makes them; False: it only checks and scores
    command: str  # what makes them, for the "missing" message


def mask_place(cfg: Config) -> MaskPlace:
    if cfg.csd.mask_source:
        return MaskPlace(Path(cfg.csd.mask_source), False,
                         "the tool that makes the pseudo-masks (or unset csd.mask_source)")
    base = cfg.csd.from_run or cfg.name
    if resolve_variant(cfg.csd).masks == "final":
        return MaskPlace(RunDir(Path(cfg.run_root) / base).sem_seg_dir, False,
                         f"csdseg make-sem-seg -c CONFIG name={base} data.infer_split="
                         f"{cfg.data.train_split} (after make-cam and the IRN stages on that "
                         "split)")
    return MaskPlace(RunDir.from_config(cfg).csd_mask_dir, True,
                     f"csdseg make-csd-masks -c CONFIG name={cfg.name} csd.from_run={base}")
