"""``csdseg pipeline``: the plan, the skip rules, --from/--to, and a tiny end-to-end run."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from csdseg.cli import main as cli_main
from csdseg.config import ConfigError
from csdseg.data import build_source
from csdseg.runs import RunDir, eval_report_path
from csdseg.stages import pipeline
from csdseg.stages.pipeline import (DOWNSTREAM, control_config, csd_config, done_reason, execute,
                                    plan)

PRESET = str(Path(__file__).resolve().parents[1] / "csdseg/config/presets/synthetic_irn.yaml")


def tiny(root: Path, run_root: Path, name: str = "pl") -> list[str]:
    """Every stage shrunk to seconds: 64 px images, resnet10t, tiny DeepLab, one epoch each."""
    return [
        f"data.root={root}", f"run_root={run_root}", f"name={name}", "device=cpu",
        "data.num_workers=0", "data.infer_split=train", "data.eval_split=train",
        "train.crop_size=64", "train.resize_long=[48,80]", "train.batch_size=8", "train.epochs=1",
        "cam.scales=[1.0]", "ir_label.num_workers=1",
        "irn.backbone=resnet10t", "irn.pretrained=none", "irn.crop_size=48", "irn.path_radius=4",
        "irn.batch_size=8", "irn.epochs=1", "refine.exp_times=4",
        "seg.model=deeplabv2_tiny", "seg.pretrained=none", "seg.frozen_bn=false",
        "seg.crop_size=48", "seg.batch_size=8", "seg.epochs=1", "seg.num_workers=0",
        "seg.scales=[1.0]", "seg.flip=false",
    ]


def test_plan_runs_cam_stages_of_both_runs_before_downstream(tmp_path):
    over = ["data.root=x", f"run_root={tmp_path}", "name=b"]
    base = pipeline.load_config(PRESET, over)
    csd = csd_config(PRESET, over, epochs=3, extra=["csd.lambda_bg=0.2"])
    assert (csd.name, csd.csd.enabled, csd.csd.from_run) == ("b_csd", True, "b")
    assert csd.train.init_from == str(tmp_path / "b") and csd.train.epochs == 3
    assert csd.csd.lambda_bg == 0.2 and base.csd.enabled is False
    assert csd_config(PRESET, over).train.epochs == base.train.epochs
    ctl = control_config(PRESET, over, epochs=3, extra=["csd.lambda_bg=0.2"])
    steps = [(s.cfg.name, s.stage) for s in plan(base, csd, ctl)]
    assert steps[:11] == [("b", "train-cam"), ("b", "make-cam"), ("b", "eval-cam"),
                          ("b", "make-ir-label"), ("b_csd", "make-csd-masks"),
                          ("b_csd", "train-cam"), ("b_csd", "make-cam"), ("b_csd", "eval-cam"),
                          ("b_ctl", "train-cam"), ("b_ctl", "make-cam"), ("b_ctl", "eval-cam")]
    assert steps[11:] == ([("b", s) for s in DOWNSTREAM[1:]] + [("b_ctl", s) for s in DOWNSTREAM]
                          + [("b_csd", s) for s in DOWNSTREAM])
    assert [s.stage for s in plan(base, None)] == pipeline.CAM_STAGES + DOWNSTREAM


def test_from_to_are_checked(tmp_path):
    steps = plan(pipeline.load_config(PRESET, [f"run_root={tmp_path}"]), None)
    with pytest.raises(ConfigError, match="--from eval-seg comes after --to make-cam"):
        execute(steps, "eval-seg", "make-cam")
    with pytest.raises(ConfigError, match="--to make-masks: not a pipeline stage"):
        execute(steps, None, "make-masks")
    # nothing selected: nothing runs, every step reported as not selected
    records = execute(steps[:2], "eval-cam", "eval-cam", echo=False)
    assert [r["status"] for r in records] == ["not selected", "not selected"]


def test_skip_rules(synth_root, tmp_path):
    cfg = pipeline.load_config(PRESET, tiny(synth_root, tmp_path))
    rd = RunDir.from_config(cfg)
    assert done_reason("train-cam", cfg) is None
    rd.checkpoint("cam").parent.mkdir(parents=True)
    rd.checkpoint("cam").write_bytes(b"")  # empty: not a finished checkpoint
    assert done_reason("train-cam", cfg) is None
    rd.checkpoint("cam").write_bytes(b"x")
    assert done_reason("train-cam", cfg) == "checkpoints/cam.pt present"
    ids = build_source(cfg.data, "train").ids
    rd.cam_dir.mkdir()
    for i in ids[:-1]:
        (rd.cam_dir / f"{i}.npy").write_bytes(b"x")
    assert done_reason("make-cam", cfg) is None  # one CAM missing
    (rd.cam_dir / f"{ids[-1]}.npy").write_bytes(b"x")
    assert done_reason("make-cam", cfg) == "every train file in cam/"
    report = eval_report_path(cfg, "eval_cam")
    report.parent.mkdir()
    report.write_text("{}")
    os.utime(report, (1e9, 1e9))  # older than the CAMs: stale
    assert done_reason("eval-cam", cfg) is None
    for i in ids:
        os.utime(rd.cam_dir / f"{i}.npy", (1e9 - 10, 1e9 - 10))
    assert done_reason("eval-cam", cfg) == "report newer than its inputs"
    crf = pipeline.load_config(PRESET, tiny(synth_root, tmp_path) + ["refine.method=crf"])
    assert done_reason("train-irn", crf) == "not needed (refine.method=crf)"
    [record] = execute([pipeline.Step("train-irn", crf)], echo=False)
    assert (record["status"], record["why"]) == ("not needed", "refine.method=crf")
    # each refiner's training stage runs only for it (csdseg.refiners.needs_training)
    psa = pipeline.load_config(PRESET, tiny(synth_root, tmp_path) + ["refine.method=psa"])
    assert done_reason("train-irn", psa) == "not needed (refine.method=psa)"
    assert done_reason("train-aff", cfg) == "not needed (refine.method=rw)"
    assert done_reason("train-aff", psa) is None
    rd.checkpoint("aff").write_bytes(b"x")
    assert done_reason("train-aff", psa) == "checkpoints/aff.pt present"



@pytest.mark.slow
def test_pipeline_end_to_end_then_everything_skipped(synth_root, tmp_path, capsys, one_thread):
    over = tiny(synth_root, tmp_path)
    first = pipeline.run_pipeline(PRESET, over, baseline_and_csd=True, stop="eval-cam",
                                  gallery=2, report=False)
    status = {(r["run"], r["stage"]): r["status"] for r in first["steps"]}
    assert all(status[("pl", s)] == "ran" for s in pipeline.CAM_STAGES)
    assert status[("pl_csd", "make-csd-masks")] == "ran"
    # --to eval-cam leaves the baseline's make-ir-label out, so CSD's masks were made in the
    # CSD run's own folder (no run writes into another)
    assert status[("pl", "make-ir-label")] == "not selected"
    assert all(status[(r, s)] == "ran" for r in ("pl_csd", "pl_ctl") for s in pipeline.CAM_STAGES)
    assert {status[(r, s)] for r in ("pl", "pl_ctl", "pl_csd") for s in DOWNSTREAM} == \
        {"not selected"}
    # the control is the CSD run with CSD off and nothing else changed
    ctl_cfg, csd_cfg = control_config(PRESET, over), csd_config(PRESET, over)
    assert not ctl_cfg.csd.enabled and csd_cfg.csd.enabled
    for section in ("train", "optim", "model", "data", "cam"):
        assert getattr(ctl_cfg, section) == getattr(csd_cfg, section), section
    assert ctl_cfg.seed == csd_cfg.seed and ctl_cfg.train.init_from.endswith("pl")
    # CAM stages all done, so a full run trains the downstream stages only
    second = pipeline.run_pipeline(PRESET, over, baseline_and_csd=True, gallery=2)
    got = [(r["run"], r["stage"], r["status"]) for r in second["steps"]]
    want_ran = {(r, s) for r in ("pl", "pl_ctl", "pl_csd") for s in DOWNSTREAM if s != "train-aff"}
    assert {(r, s) for r, s, st in got if st == "ran"} == want_ran
    # the table holds exactly the reports' numbers
    rows = {r["key"]: r for r in second["table"]}
    for cfg, col in ((pipeline.load_config(PRESET, over), "baseline"), (ctl_cfg, "control"),
                     (csd_cfg, "csd")):
        cam = json.loads(eval_report_path(cfg, "eval_cam").read_text())
        assert rows["cam_miou"][col] == cam["miou"]
        assert rows["cam_best_miou"][col] == cam["best"]["miou"]
        assert rows["cam_cooccurrence"][col] == cam["cooccurrence"]["mean"]
        sem_seg = json.loads(eval_report_path(cfg, "eval_sem_seg").read_text())
        assert rows["pseudo_miou"][col] == sem_seg["miou"]
        seg_report = json.loads(eval_report_path(cfg, "eval_seg").read_text())
        assert rows["seg_miou"][col] == seg_report["miou"]
    seg = rows["seg_miou"]
    assert seg["delta"] == pytest.approx(seg["csd"] - seg["control"])  # never CSD - baseline
    assert (tmp_path / "pl" / "reports" / "pipeline.md").is_file()
    assert second["report"] == tmp_path / "pl" / "report.html"
    # a third run (through the CLI) skips every stage and says so
    capsys.readouterr()
    assert cli_main(["pipeline", "-c", PRESET, "--baseline-and-csd", "--gallery", "2", *over]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("[pipeline] pl")]
    # 10 steps a run (train-aff "not needed": refine.method=rw) and make-csd-masks
    assert len(lines) == 3 * 10 + 1, lines
    assert all(" skipped (" in l or "train-aff" in l and " not needed (" in l for l in lines)
    # a deleted report is remade, and --from/--to limit the work to that stage
    eval_report_path(csd_cfg, "eval_sem_seg").unlink()
    third = pipeline.execute(pipeline.plan(pipeline.load_config(PRESET, over),
                                           csd_config(PRESET, over)),
                             "make-sem-seg", "eval-sem-seg", echo=False)
    assert [(r["run"], r["stage"]) for r in third if r["status"] == "ran"] == \
        [("pl_csd", "eval-sem-seg")]
    assert {r["status"] for r in third if r["stage"] not in ("make-sem-seg", "eval-sem-seg")} \
        == {"not selected"}


def test_pipeline_refuses_the_authors_masks_it_cannot_make_in_time(tmp_path):
    over = ["data.root=x", f"run_root={tmp_path}", "name=b"]
    with pytest.raises(ConfigError, match="does not support csd.masks=final"):
        pipeline.run_pipeline(PRESET, over, baseline_and_csd=True, csd_set=["csd.variant=authors"])
