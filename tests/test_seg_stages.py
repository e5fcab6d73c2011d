"""train-seg / eval-seg: the loss, the pseudo-mask dataset, CRF post-processing, a tiny run."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from csdseg.config import load_config
from csdseg.data import build_source
from csdseg.data.seg_dataset import SegTrainDataset
from csdseg.data.source import DataError
from csdseg.evaluation.metrics import confusion_matrix, mean_iou
from csdseg.runs import MissingInputError
from csdseg.stages import eval_seg, train_seg
from csdseg.stages.train_seg import seg_loss
from csdseg.report.visualize import palette_png

COLOURS = {1: (220, 30, 30), 2: (30, 200, 30), 3: (40, 40, 230)}  # aeroplane, bicycle, bird


def write_shapes_dataset(root: Path, n_train: int = 32, n_val: int = 8, size: int = 64,
                         seed: int = 0) -> None:
    """VOC layout: coloured squares (class = colour) on grey-ish noisy backgrounds."""
    rng = np.random.default_rng(seed)
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True, exist_ok=True)
    labels, splits = {}, {"train": [], "val": []}
    for n in range(n_train + n_val):
        image_id = f"img_{n:03d}"
        base = rng.integers(60, 180)
        img = np.clip(base + rng.normal(0, 12, (size, size, 3)), 0, 255)
        mask = np.zeros((size, size), np.uint8)
        present = rng.choice([1, 2, 3], size=int(rng.integers(1, 3)), replace=False)
        for cls in present:
            s = int(rng.integers(14, 28))
            y, x = rng.integers(0, size - s, 2)
            img[y:y + s, x:x + s] = COLOURS[int(cls)]
            mask[y:y + s, x:x + s] = cls
        Image.fromarray(img.astype(np.uint8)).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        palette_png(mask).save(root / "SegmentationClass" / f"{image_id}.png")
        vec = np.zeros(20, np.float32)
        vec[np.unique(mask[mask > 0]) - 1] = 1
        labels[image_id] = vec
        splits["train" if n < n_train else "val"].append(image_id)
    np.save(root / "cls_labels.npy", labels)
    for name, ids in splits.items():
        (root / "ImageSets/Segmentation" / f"{name}.txt").write_text("\n".join(ids) + "\n")


# --- loss ---------------------------------------------------------------------------------

def test_loss_ignores_255():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8)
    target = torch.full((2, 8, 8), 255, dtype=torch.long)
    where = [(0, 1, 2, 3), (0, 5, 5, 0), (1, 0, 7, 2), (1, 4, 4, 1), (1, 7, 0, 3)]
    for b, y, x, c in where:
        target[b, y, x] = c
    picked = torch.stack([logits[b, :, y, x] for b, y, x, _ in where])
    expected = F.cross_entropy(picked, torch.tensor([c for *_, c in where]))
    assert seg_loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_all_void_batch_gives_zero_loss_not_nan():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = seg_loss(logits, torch.full((1, 4, 4), 255, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_loss_upsamples_logits_or_downsamples_labels():
    logits = torch.randn(1, 3, 4, 4)
    target = torch.randint(0, 3, (1, 16, 16))
    up = F.interpolate(logits, size=(16, 16), mode="bilinear", align_corners=False)
    assert seg_loss(logits, target).item() == pytest.approx(F.cross_entropy(up, target).item(), rel=1e-6)
    small = target[:, ::4, ::4]  # nearest downsampling by 4 picks the top-left pixel of each cell
    assert seg_loss(logits, target, "logits").item() == pytest.approx(
        F.cross_entropy(logits, small).item(), rel=1e-6)


# --- dataset ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    write_shapes_dataset(root)
    return root


def _cfg(root: Path, run_root: Path, *extra: str):
    return load_config(None, [
        f"data.root={root}", "data.train_split=train", f"run_root={run_root}", "name=tiny",
        "device=cpu", "seg.model=deeplabv2_tiny", "seg.pretrained=none", "seg.frozen_bn=false",
        "seg.crop_size=48", "seg.batch_size=8", "seg.num_workers=0", "seg.scales=[1.0]",
        "seg.flip=false", *extra])


def test_dataset_crops_pads_with_void_and_is_deterministic(shapes):
    source = build_source(load_config(None, [f"data.root={shapes}"]).data, "train")
    ds = SegTrainDataset(source, source.ids, shapes / "SegmentationClass", crop_size=96,
                         scale_range=(1.0, 1.0), hflip=True, seed=3)
    a, b, c = ds[(0, 1)], ds[(0, 1)], ds[(1, 1)]
    assert a["img"].shape == (3, 96, 96) and a["mask"].shape == (96, 96)
    assert torch.equal(a["img"], b["img"]) and torch.equal(a["mask"], b["mask"])
    assert (a["mask"] == 255).sum() == 96 * 96 - 64 * 64  # the 64 px image padded to 96
    assert (a["img"][:, a["mask"] == 255] == 0).all()  # mean colour where padded
    assert not torch.equal(a["mask"], c["mask"]) or not torch.equal(a["img"], c["img"])


def test_mask_of_another_size_names_both_files(shapes, tmp_path):
    source = build_source(load_config(None, [f"data.root={shapes}"]).data, "train")
    palette_png(np.zeros((10, 12), np.uint8)).save(tmp_path / f"{source.ids[0]}.png")
    ds = SegTrainDataset(source, source.ids, tmp_path, crop_size=32)
    with pytest.raises(DataError, match=r"pseudo-mask .*img_000.png is 12x10 but its image "
                                        r".*img_000.jpg is 64x64"):
        ds[(0, 0)]


def test_train_seg_refuses_without_pseudo_masks(shapes, tmp_path):
    with pytest.raises(MissingInputError, match="sem_seg is missing or empty; run `csdseg make-sem-seg`"):
        train_seg.run(_cfg(shapes, tmp_path))
    (tmp_path / "tiny" / "sem_seg").mkdir(parents=True)
    palette_png(np.zeros((64, 64), np.uint8)).save(tmp_path / "tiny" / "sem_seg" / "img_000.png")
    with pytest.raises(DataError, match=r"img_001.png does not exist \(31 of 32 pseudo-masks missing\)"):
        train_seg.run(_cfg(shapes, tmp_path))


# --- CRF ----------------------------------------------------------------------------------

class FixedLogits(nn.Module):
    """A stand-in network that returns the same logits map [1, C, H, W] for any input."""

    min_input_size = 1

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1, -1, -1)


class OneImage:
    def __init__(self, img: np.ndarray) -> None:
        self.img = img

    def load_image(self, image_id: str) -> np.ndarray:
        return self.img


def test_crf_moves_a_blurred_boundary_to_the_image_edge():
    img = np.zeros((24, 24, 3), np.uint8)
    img[:, 12:] = 255  # the object is the right half
    cols = np.arange(24)
    # confident object right of the edge, confident background far left, and a band of
    # columns 6..11 wrongly (weakly) labelled object: the prediction leaks past the edge
    fg = np.where(cols >= 12, 0.8, np.where(cols >= 6, 0.55, 0.2))
    probs = np.stack([1 - fg, fg])[:, None, :].repeat(24, 1)
    logits = torch.from_numpy(np.log(probs)).float()[None]
    truth = np.zeros((24, 24), np.int64)
    truth[:, 12:] = 1
    plain = eval_seg.make_predictor(FixedLogits(logits), OneImage(img), torch.device("cpu"),
                                    [1.0], flip=False)("x")
    refined = eval_seg.make_predictor(FixedLogits(logits), OneImage(img), torch.device("cpu"),
                                      [1.0], flip=False, crf=True)("x")
    assert (plain != truth).sum() == 6 * 24
    assert (refined != truth).sum() < (plain != truth).sum() // 4


# --- end to end ---------------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_deeplab_learns_the_shapes(shapes, tmp_path, one_thread):
    start = time.time()
    cfg = _cfg(shapes, tmp_path, "seg.epochs=12", "seg.lr=0.01", "seg.scale_range=[0.75,1.25]",
               "seg.eval_split=val", "seg.val_every=6", "seg.log_every=4")
    run = tmp_path / "tiny"
    (run / "sem_seg").mkdir(parents=True)
    for p in (shapes / "SegmentationClass").glob("*.png"):  # ground truth as "pseudo-masks"
        (run / "sem_seg" / p.name).write_bytes(p.read_bytes())
    result = train_seg.run(cfg)
    assert result["step"] == 12 * 4 and (run / "checkpoints" / "seg.pt").is_file()
    assert train_seg.run(cfg) == {"skipped": True}
    from csdseg.engine.logger import read_log

    val = [r["val_miou"] for r in read_log(run / "logs" / "train_seg.jsonl", kind="epoch")]
    assert len(val) == 2

    report = eval_seg.evaluate(cfg, save_png=True, submission=True, progress=False)
    assert report["split"] == "val" and report["n_images"] == 8
    source = build_source(cfg.data, "val")
    gts = [source.load_mask(i) for i in source.ids]
    bg = mean_iou(sum(confusion_matrix(g, np.zeros_like(g), 21) for g in gts))
    counts = np.bincount(np.concatenate([g.ravel() for g in gts]), minlength=21)
    major = int(np.argmax(counts[1:]) + 1)  # the most frequent foreground class everywhere
    maj = mean_iou(sum(confusion_matrix(g, np.full_like(g, major), 21) for g in gts))
    assert report["miou"] > max(bg, maj) + 0.25, (report["miou"], bg, maj)
    assert val[-1] == pytest.approx(report["miou"], abs=1e-9)  # same single-scale inference
    sub = run / "results/VOC2012/Segmentation/comp6_test_cls"
    assert sorted(p.stem for p in sub.glob("*.png")) == source.ids
    assert Image.open(sub / f"{source.ids[0]}.png").mode == "P"
    assert len(list((run / "seg_pred").glob("*.png"))) == 8
    parser = argparse.ArgumentParser()
    eval_seg.add_arguments(parser)
    args = parser.parse_args(["--split", "val", "--json", f"data.root={shapes}", f"run_root={tmp_path}",
                              "name=tiny", "device=cpu", "seg.scales=[1.0]", "seg.flip=false"])
    assert eval_seg.main(args) == 0
    assert json.loads((run / "reports" / "eval_seg_val.json").read_text())["miou"] == report["miou"]
    assert time.time() - start < 180


def test_a_run_stopped_inside_the_epoch_end_validation_redoes_it(shapes, tmp_path, monkeypatch,
                                                                 one_thread):
    """The epoch's checkpoint is written after its validation: a run killed during the
    validation resumes before it and logs the epoch's val_miou, as an uninterrupted run does
    (the fault-injection harness found train-seg losing that record)."""
    from csdseg.engine.logger import read_log
    from csdseg.stages import train_seg as stage

    def run(name: str) -> list[dict]:
        cfg = _cfg(shapes, tmp_path, f"name={name}", "seg.epochs=2", "seg.eval_split=val",
                   "seg.val_every=1", "seg.log_every=1", "seg.max_steps=0")
        (tmp_path / name / "sem_seg").mkdir(parents=True, exist_ok=True)
        for p in (shapes / "SegmentationClass").glob("*.png"):
            (tmp_path / name / "sem_seg" / p.name).write_bytes(p.read_bytes())
        stage.run(cfg)
        return read_log(tmp_path / name / "logs" / "train_seg.jsonl", kind="epoch")

    ref = run("ref")
    real, calls = stage.validation_miou, []

    def killed_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt  # the kill, in the middle of epoch 1's validation
        return real(*args, **kwargs)

    monkeypatch.setattr(stage, "validation_miou", killed_once)
    with pytest.raises(KeyboardInterrupt):
        run("killed")
    resumed = run("killed")
    assert [r["epoch"] for r in resumed] == [r["epoch"] for r in ref] == [0, 1]
    assert [r["val_miou"] for r in resumed] == [r["val_miou"] for r in ref]
