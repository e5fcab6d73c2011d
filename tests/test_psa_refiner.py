"""The psa refiner (refine.method=psa): make-sem-seg walks the CAMs over a trained AffinityNet's
affinities into valid pseudo-masks, with either background (PSA's, MCTformer's); and a tiny
pipeline with refine.method=psa goes CAM -> train-aff -> make-sem-seg, train-irn not needed."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from csdseg.files.cam import CamRecord, load_cam
from csdseg.data import build_source
from csdseg.files.labels import read_label_png
from csdseg.refiners import REFINERS
from csdseg.refiners.psa import padded_size
from csdseg.runs import RunDir
from csdseg.stages import make_sem_seg, pipeline, train_aff
from psa_helpers import PSA, fake_cams, psa_config

pytestmark = pytest.mark.usefixtures("one_thread")


def test_padding_reaches_the_smallest_grid_only_for_small_images():
    assert padded_size(375, 500) == (376, 504)  # VOC: multiples of 8, as infer_aff
    assert padded_size(64, 64) == (64, 72) and padded_size(20, 100) == (40, 104)


def test_psa_refiner_writes_valid_pseudo_masks(synth_root, tmp_path):
    cfg = psa_config(synth_root, tmp_path, "psa.max_steps=1")
    fake_cams(cfg)
    train_aff.run(cfg)
    rd = RunDir.from_config(cfg)
    source = build_source(cfg.data, "val")
    for walk in ("psa", "mct"):
        shutil.rmtree(rd.sem_seg_dir, ignore_errors=True)
        assert make_sem_seg.run(psa_config(synth_root, tmp_path, f"psa.walk={walk}")) == 0
        found = set()
        for i in source.ids:
            keys = load_cam(rd.cam_dir / f"{i}.npy").keys
            labels = read_label_png(rd.sem_seg_dir / f"{i}.png", source.num_classes,
                                    (64, 64), made_by="make-sem-seg")
            assert set(np.unique(labels).tolist()) <= {0, *(keys + 1).tolist()}, (walk, i)
            found |= set(np.unique(labels).tolist())
        assert 0 in found and len(found) > 1, walk  # background and some class
    # an image without a class is all background, without running the network
    psa = REFINERS["psa"]
    empty = CamRecord(np.zeros(0, np.int64), np.zeros((0, 4, 4), np.float32),
                      np.zeros((0, 13, 14), np.float32))
    state = psa.prepare(cfg, rd)
    out = psa.refine(state, empty, np.zeros((13, 14, 3), np.uint8))
    assert out.shape == (13, 14) and not out.any()
    rd.release()


@pytest.mark.slow
def test_pipeline_with_psa_through_make_sem_seg(synth_root, tmp_path):
    preset = str(Path(__file__).resolve().parents[1] / "csdseg/config/presets/synthetic_irn.yaml")
    over = [f"data.root={synth_root}", f"run_root={tmp_path}", "name=p", "device=cpu",
            "data.num_workers=0", "data.eval_split=val", "train.crop_size=64",
            "train.resize_long=[48,80]",
            "train.batch_size=8", "train.epochs=1", "cam.scales=[1.0]", *PSA, "psa.max_steps=2"]
    steps = pipeline.plan(pipeline.load_config(preset, over), None)
    records = pipeline.execute(steps, stop="make-sem-seg", echo=False)
    status = {r["stage"]: (r["status"], r["why"]) for r in records}
    assert status["train-irn"] == ("not needed", "refine.method=psa")
    assert status["make-ir-label"] == ("not needed", "refine.method=psa")
    assert [s for s, (st, _) in status.items() if st == "ran"] == [
        "train-cam", "make-cam", "eval-cam", "train-aff", "make-sem-seg"]
    rd = RunDir(tmp_path / "p")
    assert rd.checkpoint("aff").is_file() and len(list(rd.sem_seg_dir.glob("*.png"))) == 8
    again = pipeline.execute(steps, stop="make-sem-seg", echo=False)
    assert {r["stage"]: r["status"] for r in again}["train-aff"] == "skipped"
    # a walk setting reruns make-sem-seg only; a training setting train-aff and what follows
    walk = pipeline.plan(pipeline.load_config(preset, [*over, "psa.walk=mct"]), None)
    ran = [r["stage"] for r in pipeline.execute(walk, stop="make-sem-seg", echo=False)
           if r["status"] == "ran"]
    assert ran == ["make-sem-seg"]
    rd.release()
