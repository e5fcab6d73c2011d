"""Named readings of CSD's Algorithm 1: ``csd.variant`` -> the option values it stands for.

``ours`` is csdseg's default reading (docs/csd.md, "Algorithm 1, step by step"). ``authors`` is
the reading of the authors' unfinished code (github zaiquanyang/PSD_WSSS, snapshot fdfaf8c:
``engine.py`` train_one_epoch, ``datasets.py`` VOC12Dataset, ``func.py`` cal_cam, ``main.py``
defaults); docs/csd.md, "The authors' reading", lists every point with its file and line.

:func:`resolve_variant` is the one place a variant is turned into option values. Two kinds:

- ``FIXED``: how the terms are computed, hard-coded in the authors' code. A user value that is
  neither ours (the dataclass default) nor the authors' raises :class:`ConfigError`. (A value
  equal to our default cannot be told from an unset one and is replaced.)
- ``CHOSEN``: the authors' value where the option is left at its "the variant's" sentinel
  (``""`` / None); an explicit value is kept, so these stay ablation axes under either variant.

Options the authors expose as arguments whose defaults equal ours are not listed, they stay
free: ``teacher`` (detached: the same network, eval mode, no gradient), ``fg_paste``
(same_location), ``fg_teacher_scale`` (1.0, their ``--fixmatch_temp``), ``start_epoch`` (0,
their ``--start_ep``), ``lambda_fg`` / ``lambda_bg`` (theirs default to 1.0 / 1.0; we keep the
paper's 0.01 / 0.1 so that a dose is a multiple of the paper's values under both variants).
This module imports no torch and nothing of the config (the defaults are read from the
dataclass it is given): :func:`csdseg.config.validate` calls it when a config is loaded, so an
import of the config here would be a cycle.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from csdseg.errors import ConfigError

if TYPE_CHECKING:
    from csdseg.config import CsdConfig

VARIANTS = ("ours", "authors")
MASK_KINDS = ("confident", "final")

# variant -> values of the options left at their sentinel ("" or None)
CHOSEN: dict[str, dict[str, Any]] = {
    "ours": {"masks": "confident", "fg_teacher_threshold": None},
    # final: the baseline's random-walk pseudo-masks (datasets.py reads pgt-psa-rw labels);
    # 0.5: main.py --fixmatch_fg_thre
    "authors": {"masks": "final", "fg_teacher_threshold": 0.5},
}

# the authors' hard-coded choices; ours are CsdConfig's defaults
FIXED: dict[str, dict[str, Any]] = {
    "ours": {},
    "authors": {
        "normalizer": "class_minmax",  # fg: func.py cal_cam's min-max over the classes of a cell
        "bg_normalizer": "none",       # bg: the raw maps
        "beta": 0.1,                   # bg: the constant background score appended
        "temperature": 1.0,            # no division; the scales below carry the temperatures
        "fg_background": False,        # fg: softmax over the K classes only
        "bg_student_scale": 10.0,      # bg: student log-softmax of the logits x 10
        "fg_kl_terms": "pasted",       # fg: the KL's term on class c only
        "bg_kl_terms": "background",   # bg: the KL's term on the background channel only
        "reduction": "images",         # per image over its covered cells, then over the batch
        "kl_channels": "all",          # both softmaxes over all channels ...
        "kl_classes": "all",           # ... of all classes, present or not
        "teacher_classes": "all",
    },
}

_SENTINELS = {"masks": "", "fg_teacher_threshold": None}


def _default(cfg: CsdConfig, name: str) -> Any:
    return {f.name: f.default for f in dataclasses.fields(cfg)}[name]


def variant_values(variant: str) -> dict[str, Any]:
    """Every option value the variant sets (fixed and chosen), for docs and tests."""
    check_variant(variant)
    return {**FIXED[variant], **CHOSEN[variant]}


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ConfigError(f"csd.variant must be one of {', '.join(VARIANTS)}, got '{variant}'")


def resolve_variant(cfg: CsdConfig) -> CsdConfig:
    """A copy of ``cfg`` with the variant's option values filled in (idempotent).

    Raises ConfigError for an unknown variant, an unknown ``csd.masks``, or (variant=authors)
    an option set to a value that contradicts the authors' code, naming both values.
    """
    check_variant(cfg.variant)
    fixed = FIXED[cfg.variant]
    clashes = [f"csd.{k}={getattr(cfg, k)!r} (the authors' code: {v!r})"
               for k, v in fixed.items() if getattr(cfg, k) not in (v, _default(cfg, k))]
    if clashes:
        raise ConfigError(
            f"csd.variant={cfg.variant} fixes these options, which are set otherwise: "
            f"{'; '.join(clashes)}. Remove them, or use csd.variant=ours with the options "
            "you want (docs/csd.md, \"The authors' reading\")")
    chosen = {k: v for k, v in CHOSEN[cfg.variant].items() if getattr(cfg, k) == _SENTINELS[k]}
    out = dataclasses.replace(cfg, **fixed, **chosen)
    if out.masks not in MASK_KINDS:
        raise ConfigError(f"csd.masks must be one of {', '.join(MASK_KINDS)} (or \"\" for the "
                          f"variant's), got '{out.masks}'")
    return out
