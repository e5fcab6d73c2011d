"""Scoring: predictions against ground-truth masks, the report every eval stage writes.

- :mod:`csdseg.evaluation.scoring`: a split's CAM files or label maps accumulated into one
  report (mIoU, threshold sweep, context over-activation) and its table;
- :mod:`csdseg.evaluation.metrics`: confusion matrices and IoUs from dataset-level counts;
- :mod:`csdseg.evaluation.groups`: single- vs multi-label mIoU, co-occurrence confusion;
- :mod:`csdseg.evaluation.context`: context confusion (datasets whose masks label the context).
"""
from csdseg.evaluation.scoring import (Accumulator, evaluate_cams, evaluate_labels, format_report,
                                       sweep_thresholds, trivial_mious)

__all__ = ["Accumulator", "evaluate_cams", "evaluate_labels", "format_report",
           "sweep_thresholds", "trivial_mious"]
