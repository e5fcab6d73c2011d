"""experiments/csd_study.py: every screened setting is a config the synthetic presets accept.

A setting whose overrides fail validation would stop a background study after its warm start
had trained for half an hour; this catches it before a run is started.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

import json  # noqa: E402

from csd_study import PAPER, SETTINGS, load_runs, select  # noqa: E402
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


def _fake_run(out: Path, name: str, miou: float, cooc: float, dead_per_step: list[float]):
    """A study run on disk: its results file and a training log, 6 logged steps per epoch."""
    (out / f"{name}_s0.json").write_text(json.dumps(
        {"setting": {"name": name.removeprefix("study_")},
         "train": {"miou": miou, "cooc": cooc}}))
    logs = out / f"{name}_s0" / "logs"
    logs.mkdir(parents=True)
    rows = [{"kind": "step", "step": 10 * (i + 1), "epoch": i // 6, "dead_cam_share": d,
             "loss_cls": 0.2} for i, d in enumerate(dead_per_step)]
    (logs / "train_cam.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")


def test_rule_reads_dead_share_over_the_last_epoch(tmp_path):
    """Round 5's rule: one dead map at the last logged step (9.5% of ~21 present classes) does
    not exclude a setting whose last epoch averages under 5%; a setting dead all through its
    last epoch is excluded however much it lowers co-occurrence confusion."""
    (tmp_path / "results_s0.json").write_text(json.dumps(
        {"ctl": {"train": {"miou": 0.30, "cooc": 0.060}}}))
    _fake_run(tmp_path, "study_ours_x1_pasted", 0.32, 0.054, [0.5] * 6 + [0.0] * 5 + [0.095])
    _fake_run(tmp_path, "study_ours_x1_random", 0.32, 0.058, [0.0] * 12)
    _fake_run(tmp_path, "study_ours_x1_ema", 0.31, 0.040, [0.0] * 6 + [0.2] * 6)
    controls, settings = load_runs(tmp_path, [0])
    assert settings["ours_x1_pasted"][0]["final_step"]["dead_cam_share"] == 0.095
    assert settings["ours_x1_pasted"][0]["final_step"]["dead_cam_share_last_epoch"] == \
        pytest.approx(0.095 / 6)
    assert select(controls, settings) == "ours_x1_pasted"
    # a setting losing CAM mIoU is never picked, whatever its co-occurrence figure
    _fake_run(tmp_path, "study_ours_x1_final", 0.29, 0.010, [0.0] * 12)
    assert select(*load_runs(tmp_path, [0])) == "ours_x1_pasted"


def test_one_command_makes_what_is_missing_then_prints_the_table(tmp_path, monkeypatch, capsys):
    """`confirm --run` / `table --run`: each table from one command. What a seed lacks is run
    (baseline + control, then the setting); what is on disk is not run again."""
    import csd_study

    calls = []

    def fake_seed(data, out, seed, args, with_csd):
        calls.append(("base", seed))
        return {"ctl": {"train": {"miou": 0.30, "cooc": 0.06}}}

    def fake_setting(args):
        calls.append((args.setting, args.seed, args.eval))
        return {"setting": {"name": args.setting}, "train": {"miou": 0.33, "cooc": 0.05}}

    monkeypatch.setattr(csd_study, "generate", lambda *a, **k: None)
    monkeypatch.setattr(csd_study, "run_seed", fake_seed)
    monkeypatch.setattr(csd_study, "run_setting", fake_setting)
    monkeypatch.setattr(csd_study, "summarise", lambda per_seed: f"seeds {sorted(per_seed)}")
    (tmp_path / "results_s3.json").write_text(json.dumps(fake_seed(None, None, 3, None, False)))
    calls.clear()
    csd_study.main(["confirm", "--run", "--out", str(tmp_path), "--seeds", "3", "4",
                    "--setting", "ours_x1_final"])
    assert calls == [("ours_x1_final", 3, "full"), ("base", 4), ("ours_x1_final", 4, "full")]
    assert "seeds [3, 4]" in capsys.readouterr().out
    calls.clear()
    csd_study.main(["table", "--run", "--out", str(tmp_path), "--seeds", "3", "4",
                    "--settings", "ours_x1_final", "ours_x10", "--eval", "train", "--select"])
    assert calls == [("ours_x10", 3, "train"), ("ours_x10", 4, "train")]
    printed = capsys.readouterr().out
    assert "| ours_x1_final | 3,4 | +3.0 ± 0.0" in printed and "| ours_x10 | 3,4 |" in printed
    with pytest.raises(SystemExit, match="full evaluation"):
        csd_study.main(["confirm", "--run", "--out", str(tmp_path), "--eval", "train"])
