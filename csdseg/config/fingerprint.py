"""A stage's config fingerprint: a hash of the settings that make its outputs.

The pipeline skips a stage when its outputs are complete *and* were made with the settings the
current config asks for. Comparing whole configs would rerun train-cam when only seg.lr changed;
so each stage declares the keys that shape its outputs (csdseg.stages.registry), and a stage's
fingerprint also covers its upstream stages' keys: a changed ``cam.scales`` reruns make-cam and
everything after it, never train-cam.

Fingerprints are computed from settings, not stored: the run's recorded config
(``configs/<stage>.yaml``, written when the stage starts) gives the settings its outputs were
made with, and keys missing from an older record take today's defaults, so runs made before a
new option existed are still recognised.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from csdseg.config.loading import renamed, to_dict
from csdseg.config.sections import Config

# Settings that change how a stage runs, never what it writes: never part of a fingerprint.
# The split names are left out too: per-image stages write one file per id (the completeness
# check is per split), and one report per split (csdseg.runs.eval_report_path).
HOW_NOT_WHAT = {"name", "run_root", "device", "data.num_workers", "data.infer_split",
                "data.eval_split", "data.skip_bad_images", "ir_label.num_workers",
                "refine.walk_threads", "train.log_every", "train.save_every", "irn.log_every",
                "irn.save_every", "psa.log_every", "psa.save_every", "seg.log_every",
                "seg.save_every",
                "cam.max_pixels",  # a guard: refuses images, never changes a map
                "cam.backend",  # the engine: maps within 1e-5 of torch's (tests/test_cam_backend.py)
                "seg.num_workers", "seg.val_every", "seg.eval_split"}


def settings(cfg: Config) -> dict[str, Any]:
    """The config as nested plain values (what ``configs/<stage>.yaml`` records)."""
    return to_dict(cfg)


def recorded_settings(path: Path) -> dict[str, Any] | None:
    """A recorded config over today's defaults; None when there is no readable record."""
    try:
        recorded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(recorded, dict):
        return None
    # a record written before a setting was renamed, read under today's names
    return _merge(to_dict(Config()), renamed(recorded, warn=False))


def _merge(defaults: dict, recorded: dict) -> dict:
    out = dict(defaults)
    for key, value in recorded.items():
        out[key] = _merge(defaults[key], value) if isinstance(value, dict) and isinstance(
            defaults.get(key), dict) else value
    return out


def select(values: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``keys`` ("section" or "section.field") of ``values``, less :data:`HOW_NOT_WHAT`."""
    picked: dict[str, Any] = {}
    for key in keys:
        section, _, leaf = key.partition(".")
        if leaf:
            picked[key] = values.get(section, {}).get(leaf)
        elif isinstance(values.get(section), dict):
            picked.update({f"{section}.{k}": v for k, v in values[section].items()})
        else:
            picked[key] = values.get(section)
    if "csd" in keys and not values.get("csd", {}).get("enabled"):
        # CSD's settings shape nothing while it is off: the control's outputs stay valid when
        # only the CSD run's --csd-set values change
        picked = {k: v for k, v in picked.items() if not k.startswith("csd.")}
        picked["csd.enabled"] = False
    return {k: v for k, v in picked.items() if k not in HOW_NOT_WHAT}


def digest(picked: dict[str, Any]) -> str:
    text = json.dumps(picked, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def resume_difference(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The settings in which the config a resumable checkpoint recorded differs from
    ``current`` (both nested, ``current`` holding the sections the stage records): the record
    read under today's names with today's defaults for keys it predates, as a stage's record
    is, and settings that change how a stage runs, never what it writes, left out."""
    defaults = to_dict(Config())
    old = _merge(defaults, renamed(recorded, warn=False))
    now = _merge(defaults, current)

    def flat(values: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for section in current:
            value = values.get(section)
            if isinstance(value, dict):
                out.update({f"{section}.{k}": v for k, v in value.items()})
            else:
                out[section] = value
        return out
    return [k for k in difference(flat(old), flat(now)) if k not in HOW_NOT_WHAT]


def difference(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The keys whose values differ, for the message that says why a stage reruns."""
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
