"""bench/csd_study.py: every screened setting is a config the synthetic presets accept.

A setting whose overrides fail validation would stop a background study after its warm start
had trained for half an hour; this catches it before a run is started.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from csd_study import PAPER, SETTINGS  # noqa: E402
from csdseg.config import load_config  # noqa: E402
from csdseg.csd.variants import resolve_variant  # noqa: E402

PRESETS = Path(__file__).resolve().parents[1] / "csdseg/config/presets"


@pytest.mark.parametrize("preset", ["synthetic_irn", "synthetic_irn_pretrained", "synthetic_mct"])
@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_setting_loads(preset, setting, tmp_path):
    cfg = load_config(PRESETS / f"{preset}.yaml",
                      [f"run_root={tmp_path}", "csd.enabled=true", *SETTINGS[setting]])
    csd = resolve_variant(cfg.csd)  # what the training stage reads
    dose = csd.lambda_fg / PAPER["fg"]
    assert csd.lambda_bg == pytest.approx(PAPER["bg"] * dose)  # a dose scales both terms
    if setting.startswith("authors"):
        assert csd.masks == "final" and csd.normalizer == "class_minmax"
    else:
        assert csd.masks == ("final" if setting.endswith("_final") else "confident")


def test_round4_settings_change_one_axis_each():
    """Each round-4 setting differs from the literal one on exactly the axis it names."""
    base = resolve_variant(load_config(PRESETS / "synthetic_irn.yaml", ["csd.enabled=true"]).csd)
    axes = {"ours_x1_final": "masks", "ours_x1_pasted": "kl_channels",
            "ours_x1_random": "fg_paste", "ours_x1_ema": "teacher"}
    for name, axis in axes.items():
        cfg = resolve_variant(load_config(PRESETS / "synthetic_irn.yaml",
                                          ["csd.enabled=true", *SETTINGS[name]]).csd)
        changed = {f for f in vars(base) if getattr(base, f) != getattr(cfg, f)}
        assert changed == {axis}, (name, changed)
