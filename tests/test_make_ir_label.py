"""The make-ir-label stage (confident labels into the run) and make-csd-masks beside it."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import csdseg.refiners.ir_labels
from csdseg.files.cam import save_cam
from csdseg.config import Config
from csdseg.data import build_source
from csdseg.ops.confident_labels import confident_labels
from csdseg.runs import MissingInputError, RunDir
from csdseg.stages import make_ir_label


IDS = ["2007_000001", "2007_000002", "2007_000003"]


@pytest.fixture()
def run_cfg(tmp_path) -> Config:
    """A 3-image VOC-layout dataset (24x32 images) with make-cam style CAMs in a run dir."""
    root = tmp_path / "VOC2012"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "mini.txt").write_text("\n".join(IDS) + "\n")
    labels, rng = {}, np.random.default_rng(0)
    cfg = Config(name="t", run_root=str(tmp_path / "runs"))
    cfg.data.root, cfg.data.infer_split = str(root), "mini"
    cam_dir = RunDir.from_config(cfg).cam_dir
    cam_dir.mkdir(parents=True)
    for n, image_id in enumerate(IDS):
        img = np.full((24, 32, 3), 40, np.uint8)
        img[6:18, 8 + n:24 + n] = (200, 60, 60)  # the object
        Image.fromarray(img).save(root / "JPEGImages" / f"{image_id}.jpg", quality=98)
        keys = np.array([n, 11])
        high = np.zeros((2, 24, 32), np.float32)
        high[0, 6:18, 8 + n:24 + n] = rng.uniform(0.2, 1.0, (12, 16))
        high[1, 4:8, 4:10] = 0.4
        labels[image_id] = np.isin(np.arange(20), keys).astype(np.float32)
        save_cam(cam_dir / f"{image_id}.npy", keys, high[:, ::4, ::4], high)
    np.save(root / "cls_labels.npy", labels)
    cfg.ir_label.num_workers = 1
    return cfg


def test_make_ir_label_writes_irn_confident_labels(run_cfg):
    run_cfg.ir_label.num_workers = 2
    make_ir_label.run(run_cfg)
    rd = RunDir.from_config(run_cfg)
    source = build_source(run_cfg.data, "mini")
    for n, image_id in enumerate(IDS):
        with Image.open(rd.ir_label_dir / f"{image_id}.png") as png:
            assert png.mode == "P"
            written = np.asarray(png)
        record = np.load(rd.cam_dir / f"{image_id}.npy", allow_pickle=True).item()
        expected = confident_labels(source.load_image(image_id), record)
        np.testing.assert_array_equal(written, expected)
        assert set(np.unique(written)) <= {0, n + 1, 12, 255}
        assert (written == n + 1).sum() > 100  # the object is found
    assert rd.config("make-ir-label").is_file()


def test_make_ir_label_resumes_without_recomputing(run_cfg, monkeypatch):
    make_ir_label.run(run_cfg)
    out = RunDir.from_config(run_cfg).ir_label_dir
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("*.png")}
    assert len(before) == 3

    def boom(*args, **kwargs):
        raise AssertionError("recomputed an existing output")

    monkeypatch.setattr(csdseg.refiners.ir_labels, "confident_labels", boom)  # the stage's worker
    make_ir_label.run(run_cfg)  # everything exists: nothing is recomputed
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("*.png")}
    assert after == before
    (out / f"{IDS[1]}.png").unlink()
    with pytest.raises(AssertionError, match=f"image {IDS[1]}: recomputed"):
        make_ir_label.run(run_cfg)  # only the deleted one is redone
    assert not list(out.glob(".*.tmp"))  # the failed write left no partial file


def test_make_ir_label_refuses_missing_cams(run_cfg):
    rd = RunDir.from_config(run_cfg)
    (rd.cam_dir / f"{IDS[2]}.npy").unlink()
    with pytest.raises(MissingInputError) as info:
        make_ir_label.run(run_cfg)
    assert str(info.value) == (
        f"1 of 3 CAM files of split 'mini' are missing from {rd.cam_dir}, e.g. {IDS[2]}.npy; "
        "run `csdseg make-cam` first with the same data.infer_split")
    assert not rd.ir_label_dir.exists()
    for path in rd.cam_dir.glob("*.npy"):
        path.unlink()
    with pytest.raises(MissingInputError,
                       match=r"cam is missing or empty; run `csdseg make-cam` first"):
        make_ir_label.run(run_cfg)


def test_csd_masks_live_in_the_csd_run_and_link_matching_baseline_labels(run_cfg):
    """make-csd-masks never writes into the baseline: it links the baseline's confident labels
    when they were made with the same settings, and makes its own otherwise."""
    import copy

    from csdseg.stages import make_csd_masks

    make_ir_label.run(run_cfg)
    base = RunDir.from_config(run_cfg)
    before = {p.name: p.stat().st_mtime_ns for p in base.ir_label_dir.iterdir()}
    csd = copy.deepcopy(run_cfg)
    csd.name, csd.csd.from_run, csd.data.train_split = "t_csd", "t", "mini"
    csd.ir_label.num_workers = 3  # how the labels are computed, not what: still linked
    make_csd_masks.run(csd)
    own = RunDir.from_config(csd).csd_mask_dir
    for image_id in IDS:  # the same files (hard links), the baseline's untouched
        assert (own / f"{image_id}.png").samefile(base.ir_label_dir / f"{image_id}.png")
    assert {p.name: p.stat().st_mtime_ns for p in base.ir_label_dir.iterdir()} == before
    assert not (base.root / "reports" / "make_csd_masks.json").exists()
    # other CRF settings: its own labels, computed from the baseline's CAMs
    other = copy.deepcopy(csd)
    other.name, other.ir_label.fg_threshold = "t_csd2", 0.6
    make_csd_masks.run(other)
    mine = RunDir.from_config(other).csd_mask_dir
    assert sorted(p.stem for p in mine.glob("*.png")) == sorted(IDS)
    assert not (mine / f"{IDS[0]}.png").samefile(base.ir_label_dir / f"{IDS[0]}.png")
    assert {p.name: p.stat().st_mtime_ns for p in base.ir_label_dir.iterdir()} == before


def test_csd_masks_are_not_linked_from_labels_older_than_the_cams(run_cfg):
    """Labels the baseline made before its CAMs were rewritten (new weights, a cam.* change
    under a refiner that never reads them) are not reused: CSD makes its own from the CAMs."""
    import copy
    import os

    from csdseg.files.cam import save_cam
    from csdseg.stages import make_csd_masks

    make_ir_label.run(run_cfg)
    base = RunDir.from_config(run_cfg)
    record = base.config("make-ir-label")
    os.utime(record, (record.stat().st_mtime - 10,) * 2)  # the labels are from before ...
    keys = np.array([0, 11])
    high = np.zeros((2, 24, 32), np.float32)
    high[1, 2:20, 2:30] = 1.0  # ... this rewrite of the first image's CAMs
    save_cam(base.cam_dir / f"{IDS[0]}.npy", keys, high[:, ::4, ::4], high)
    csd = copy.deepcopy(run_cfg)
    csd.name, csd.csd.from_run, csd.data.train_split = "t_csd", "t", "mini"
    make_csd_masks.run(csd)
    own = RunDir.from_config(csd).csd_mask_dir
    assert not (own / f"{IDS[0]}.png").samefile(base.ir_label_dir / f"{IDS[0]}.png")
    made = np.asarray(Image.open(own / f"{IDS[0]}.png"))
    assert (made == 12).sum() > (np.asarray(Image.open(base.ir_label_dir / f"{IDS[0]}.png")) == 12).sum()
    # and the pipeline calls the CSD run's masks stale when the baseline's CAMs change again
    from csdseg.stages import pipeline
    assert pipeline.stale_reason("make-csd-masks", csd) is None
    later = RunDir.from_config(csd).config("make-csd-masks").stat().st_mtime + 5
    save_cam(base.cam_dir / f"{IDS[1]}.npy", keys, high[:, ::4, ::4], high)
    os.utime(base.cam_dir, (later, later))
    assert "is newer than this stage's outputs" in pipeline.stale_reason("make-csd-masks", csd)


def test_make_csd_masks_only_checks_masks_it_does_not_make(run_cfg):
    """csd.masks=final (the authors' reading) trains on the baseline's pseudo-masks: make-csd-
    masks checks and scores that folder and makes nothing."""
    import copy

    from csdseg.runs import MissingInputError
    from csdseg.stages import make_csd_masks

    csd = copy.deepcopy(run_cfg)
    csd.name, csd.csd.from_run, csd.data.train_split = "t_authors", "t", "mini"
    csd.csd.masks = "final"
    with pytest.raises(MissingInputError, match=r"sem_seg lacks 3 of 3 masks.*make-sem-seg"):
        make_csd_masks.run(csd)
    assert not RunDir.from_config(csd).csd_mask_dir.exists()
