"""``csdseg predict``: masks and overlays for any image mode and size, from the checkpoint alone."""
from __future__ import annotations

import argparse
import os

import numpy as np
import pytest
import torch
from PIL import Image

from csdseg.data.source import DataError, read_image
from csdseg.engine.checkpoint import save_final
from csdseg.models.deeplab import build_seg_model
from csdseg.ops.seg_inference import predict_probs
from csdseg.stages import predict
from csdseg.report.visualize import PALETTE, side_by_side


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_seg_model("deeplabv3plus_tiny", 2).eval()
    path = tmp_path_factory.mktemp("ckpt") / "seg.pt"
    save_final(path, model, {"model": "deeplabv3plus_tiny", "num_classes": 2,
                             "class_names": ["cat", "dog"], "model_config": model.config()})
    return path, model


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    predict.add_arguments(parser)
    return predict.main(parser.parse_args(list(argv)))


def _inputs(folder):
    rng = np.random.default_rng(0)
    folder.mkdir()
    Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(folder / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (33, 30), dtype=np.uint8), "L").save(folder / "gray.png")
    Image.fromarray(rng.integers(0, 256, (24, 36, 4), dtype=np.uint8), "RGBA").save(folder / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (30, 20, 3), dtype=np.uint8)).convert("CMYK").save(
        folder / "cmyk.jpg")
    Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).save(folder / "tiny.png")
    (folder / "notes.txt").write_text("not an image")
    return {"rgb": (40, 52), "gray": (33, 30), "rgba": (24, 36), "cmyk": (30, 20), "tiny": (5, 7)}


def test_predict_writes_a_mask_and_an_overlay_per_image(checkpoint, tmp_path):
    path, model = checkpoint
    sizes = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert _run(str(path), str(tmp_path / "in"), "--out", str(out), "--device", "cpu") == 0
    expect = sorted([f"{s}.png" for s in sizes] + [f"{s}_overlay.png" for s in sizes])
    assert sorted(p.name for p in out.iterdir()) == expect
    for stem, (h, w) in sizes.items():
        mask = Image.open(out / f"{stem}.png")
        assert mask.mode == "P" and mask.size == (w, h)
        assert np.asarray(mask).max() <= 2
        assert np.array_equal(np.asarray(mask.getpalette(), np.uint8)[:9], PALETTE[:3].ravel())
        overlay = np.asarray(Image.open(out / f"{stem}_overlay.png"))
        picture = side_by_side(read_image(tmp_path / "in" / f"{stem}{'.jpg' if stem == 'cmyk' else '.png'}"),
                               np.asarray(mask).astype(np.int64), ["background", "cat", "dog"])
        assert np.array_equal(overlay, picture)
    img = read_image(tmp_path / "in" / "rgb.png")
    ref = predict_probs(model, img, torch.device("cpu"), [1.0], flip=True).argmax(0)
    assert np.array_equal(np.asarray(Image.open(out / "rgb.png")), ref)


def test_predict_single_file_and_skip_existing(checkpoint, tmp_path):
    path, _ = checkpoint
    _inputs(tmp_path / "in")
    out = tmp_path / "out"
    _run(str(path), str(tmp_path / "in" / "tiny.png"), "--out", str(out), "--device", "cpu",
         "--scales", "0.5", "1.0", "--no-flip")
    assert sorted(p.name for p in out.iterdir()) == ["tiny.png", "tiny_overlay.png"]
    stamp = os.stat(out / "tiny.png").st_mtime_ns
    _run(str(path), str(tmp_path / "in" / "tiny.png"), "--out", str(out), "--device", "cpu")
    assert os.stat(out / "tiny.png").st_mtime_ns == stamp


def test_predict_refuses_empty_folder_and_foreign_checkpoint(checkpoint, tmp_path):
    path, model = checkpoint
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        _run(str(path), str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    save_final(tmp_path / "cam.pt", model, {"model": "resnet50_cam", "num_classes": 2})
    _inputs(tmp_path / "in")
    from csdseg.errors import StageError

    with pytest.raises(StageError, match="not a segmentation checkpoint"):
        _run(str(tmp_path / "cam.pt"), str(tmp_path / "in"), "--out", str(tmp_path / "o"))


def test_side_by_side_legend_shows_the_present_classes():
    img = np.full((8, 10, 3), 100, np.uint8)
    labels = np.zeros((8, 10), np.int64)
    labels[:, 5:] = 2
    labels[0, 0] = 255
    pic = side_by_side(img, labels, ["background", "cat", "dog"], min_height=16)
    # image enlarged x2 to 16 rows: image | gap | overlay | gap | legend
    assert pic.shape[0] == 36  # the legend's 2 rows of 16 px + margin outgrow the 16 px image
    overlay = pic[:16, 24:44]
    assert (overlay[:, :10] == 100).all()  # background and void left as the image
    assert np.array_equal(overlay[5, 15], np.round(0.5 * 100 + 0.5 * PALETTE[2]).astype(np.uint8))
    legend = pic[:, 48:]
    assert np.array_equal(legend[2 + 6, 8], PALETTE[0])  # swatch of row 0: background
    assert np.array_equal(legend[18 + 6, 8], PALETTE[2])  # swatch of row 1: dog (cat absent)
    assert not (legend[34:] != 255).any()
