"""MCTformer through the CAM stages: train-cam (AdamW, cosine, DeiT crop) and make-cam."""
import numpy as np

from conftest import tiny_config
from csdseg.files.cam import load_cam
from csdseg.data import build_source
from csdseg.data.transforms import random_resized_crop
from csdseg.engine.logger import read_log
from csdseg.engine.schedule import warmup_cosine_lr
from csdseg.runs import RunDir
from csdseg.stages import make_cam, train_cam


def test_random_resized_crop_keeps_image_and_mask_aligned():
    rng = np.random.default_rng(0)
    mask = np.zeros((60, 80), np.uint8)
    mask[:, 40:] = 7  # right half is class 7
    img = np.zeros((60, 80, 3), np.uint8)
    img[:, 40:] = 200
    for _ in range(20):
        out, (m,) = random_resized_crop(img, 32, rng, (mask,))
        assert out.shape == (32, 32, 3) and m.shape == (32, 32)
        # bright pixels are the class-7 pixels (up to the interpolated edge)
        assert ((out[..., 0] > 100) == (m == 7)).mean() > 0.9


def test_warmup_cosine_schedule_values():
    assert warmup_cosine_lr(1e-3, 0, 100, 10) == 1e-6
    assert abs(warmup_cosine_lr(1e-3, 10, 100, 10) - 1e-3) < 1e-12
    assert abs(warmup_cosine_lr(1e-3, 100, 100, 10, min_lr=1e-5) - 1e-5) < 1e-12
    mid = warmup_cosine_lr(1e-3, 55, 100, 10, min_lr=0.0)
    assert abs(mid - 0.5e-3) < 1e-9


def test_mctformer_trains_and_writes_minmax_maps(synth_root, tmp_path):
    cfg = tiny_config(synth_root, tmp_path, "model.name=mctformer_v2_tiny", "model.pretrained=none",
                      "optim.name=adamw", "optim.schedule=cosine", "optim.lr=5e-4",
                      "optim.weight_decay=0.05", "optim.warmup_epochs=1", "train.augment=mct", "train.max_steps=4",
                      "train.log_every=1", "cam.scales=[1.0]", "cam.normalize=minmax",
                      "data.infer_split=val")
    train_cam.run(cfg)
    rows = read_log(RunDir.from_config(cfg).log("train_cam"))
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) for r in rows)
    assert rows[0]["lr"] < rows[1]["lr"]  # warming up
    make_cam.run(cfg)
    source = build_source(cfg.data, "val")
    for image_id in source.ids:
        hr = load_cam(cfg.run_dir / "cam" / f"{image_id}.npy").high_res
        assert hr.shape[1:] == source.load_image(image_id).shape[:2]
        assert hr.min() >= 0 and hr.max() <= 1
        flat = hr.reshape(len(hr), -1)
        assert np.allclose(flat.min(1), 0, atol=1e-6)  # min-max: each class map starts at 0
