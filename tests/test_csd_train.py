"""CSD end to end on tiny synthetic data: baseline -> make-cam -> make-csd-masks -> CSD."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from csdseg.cli import main
from csdseg.data.synthetic import generate
from csdseg.engine.logger import read_log

pytestmark = pytest.mark.slow

COMMON = ["model.name=resnet10t_cam", "model.pretrained=none", "model.detach_after=0",
          "model.frozen_bn=false", "device=cpu", "data.num_workers=0", "train.crop_size=96",
          "train.resize_long=[88,112]", "train.batch_size=4", "train.log_every=1",
          "optim.momentum=0.9", "data.train_split=train", "data.infer_split=train",
          "cam.scales=[1.0]", "cam.flip=false", "ir_label.num_workers=1", "seed=1"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("csd")
    root = generate(tmp / "data", n_train=48, n_val=8, size=96, seed=0, workers=1)
    args = [*COMMON, f"data.root={root}", f"run_root={tmp / 'runs'}"]
    assert main(["train-cam", *args, "name=base", "train.max_steps=12"]) == 0
    return {"tmp": tmp, "args": args, "runs": tmp / "runs"}


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in read_log(run / "logs" / "train_cam.jsonl", "step")]


def test_disabled_csd_leaves_training_unchanged(setup):
    assert main(["train-cam", *setup["args"], "name=again", "train.max_steps=12",
                 "csd.enabled=false", "csd.lambda_fg=5"]) == 0
    base = _losses(setup["runs"] / "base")
    assert len(base) == 12 and base == _losses(setup["runs"] / "again")


def test_csd_training_runs_logs_terms_and_does_not_collapse(setup, capsys, caplog):
    args, runs = setup["args"], setup["runs"]
    # without masks: refuses, naming the folder and the command
    assert main(["train-cam", *args, "name=nomask", "csd.enabled=true", "csd.from_run=base"]) == 2
    err = capsys.readouterr().err
    assert str(runs / "nomask" / "csd_masks") in err
    assert "csdseg make-csd-masks -c CONFIG name=nomask csd.from_run=base" in err
    assert main(["make-cam", *args, "name=base"]) == 0
    assert main(["make-csd-masks", *args, "name=csd", "csd.from_run=base"]) == 0
    out = capsys.readouterr().out
    assert "M_fg  precision" in out and "M_bg  precision" in out
    # the masks and their report live in the CSD run; the baseline's folder is left alone
    report = json.loads((runs / "csd" / "reports" / "make_csd_masks.json").read_text())
    assert report["n_images"] == 48 and 0 < report["fg_precision"] <= 1
    labels = sorted((runs / "csd" / "csd_masks").glob("*.png"))
    assert len(labels) == 48 and not (runs / "base" / "ir_label").exists()
    warm = [f"train.init_from={runs / 'base'}", "train.max_steps=6", "csd.enabled=true",
            "csd.from_run=base"]
    with caplog.at_level(logging.INFO, logger="csdseg"):
        assert main(["train-cam", *args, "name=csd", *warm]) == 0
    # the end of training says how much CSD ran: samples per epoch, share of batches touched
    assert "csd: samples with views per epoch [" in caplog.text and "CSD touched" in caplog.text
    assert main(["train-cam", *args, "name=ref", *warm, "csd.lambda_fg=0", "csd.lambda_bg=0",
                 f"csd.mask_source={runs / 'csd' / 'csd_masks'}"]) == 0  # the same masks
    rows = read_log(runs / "csd" / "logs" / "train_cam.jsonl", "step")
    ref = read_log(runs / "ref" / "logs" / "train_cam.jsonl", "step")
    assert len(rows) == 6
    for key in ("loss_cls", "loss_fg", "loss_bg", "csd_samples", "dead_cam_share"):
        assert all(np.isfinite(r[key]) for r in rows), key
    assert sum(r["csd_samples"] for r in rows) > 0 and any(r["loss_fg"] > 0 for r in rows)
    # ... and keeps the counts for the pipeline table: the same samples as the step log
    counts = json.loads((runs / "csd" / "reports" / "csd_counts.json").read_text())
    assert counts["samples_per_epoch"] == [sum(r["csd_samples"] for r in rows)]
    assert counts["batches"] == 6 and counts["touched"] == sum(r["csd_samples"] > 0 for r in rows)
    # the same samples with the CSD terms switched off is the baseline's behaviour: CSD may
    # not kill CAMs or wreck classification within these steps
    dead, dead_ref = (np.mean([r["dead_cam_share"] for r in x]) for x in (rows, ref))
    cls, cls_ref = (np.mean([r["loss_cls"] for r in x]) for x in (rows, ref))
    assert dead <= dead_ref + 0.15, (dead, dead_ref)
    assert cls <= 1.5 * cls_ref + 0.05, (cls, cls_ref)
    # show-csd draws the grid and the co-occurrence heat-map
    grid = setup["tmp"] / "grid.png"
    assert main(["show-csd", *args, "name=csd", "csd.from_run=base", "--n", "3", "--out",
                 str(grid), "--checkpoint", str(runs / "csd" / "checkpoints" / "cam.pt")]) == 0
    assert grid.is_file() and (setup["tmp"] / "grid_cooccurrence.png").is_file()


def test_csd_with_the_frozen_baseline_teacher_trains(setup, capsys):
    args, runs = setup["args"], setup["runs"]
    if not (runs / "base" / "cam").is_dir():  # made by the test above when run with it
        assert main(["make-cam", *args, "name=base"]) == 0
    assert main(["make-csd-masks", *args, "name=frozen", "csd.from_run=base"]) == 0
    assert main(["train-cam", *args, "name=frozen", f"train.init_from={runs / 'base'}",
                 "train.max_steps=4", "csd.enabled=true", "csd.from_run=base",
                 "csd.teacher=frozen"]) == 0
    rows = read_log(runs / "frozen" / "logs" / "train_cam.jsonl", "step")
    assert len(rows) == 4 and all(np.isfinite(r["loss"]) for r in rows)
    assert any(r["loss_fg"] > 0 for r in rows)
    # without a baseline run to take the teacher from: refused, naming the option
    assert main(["train-cam", *args, "name=alone", "csd.enabled=true", "csd.teacher=frozen",
                 "csd.mask_source=" + str(runs / "frozen" / "csd_masks")]) == 2
    assert "csd.teacher=frozen needs csd.from_run" in capsys.readouterr().err
