"""End to end on the synthetic data: CAMs -> confident labels -> IRN -> random walk (CPU)."""
import pytest

from conftest import tiny_config
from csdseg.data.synthetic import generate
from csdseg.stages import (eval_cam, eval_sem_seg, make_cam, make_ir_label, make_sem_seg,
                           train_cam, train_irn)


@pytest.mark.slow
def test_random_walk_pseudo_masks_beat_their_cams(tmp_path, capsys, one_thread):
    # the preset's image size (a 32 x 32 stride-4 grid); at 96 px the walk did not gain
    root = generate(tmp_path / "data", n_train=400, n_val=10, size=128, seed=2, workers=1)
    cfg = tiny_config(root, tmp_path / "runs", "name=e2e", "train.epochs=8",
                      "train.batch_size=16", "train.crop_size=128", "train.resize_long=[96,160]",
                      "data.infer_split=train", "data.eval_split=train", "ir_label.num_workers=1")
    train_cam.run(cfg)
    make_cam.run(cfg)
    cams = eval_cam.evaluate(cfg, progress=False)
    make_ir_label.run(cfg)
    train_irn.run(cfg)
    make_sem_seg.run(cfg)
    pseudo = eval_sem_seg.evaluate(cfg, progress=False)
    with capsys.disabled():
        print(f"\nCAM mIoU {cams['miou']:.3f} -> random-walk pseudo-masks {pseudo['miou']:.3f} "
              f"(exp_times {cfg.refine.exp_times}); trivial {cams['trivial']}")
    assert pseudo["n_images"] == 400
    assert pseudo["miou"] > cams["miou"] + 0.01
