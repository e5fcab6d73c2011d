"""The catalogue of bad inputs (docs/reliability.md): each gives one clear line naming the file
or key and the fix -- through the CLI, exit status 2 -- and leaves nothing half-written."""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config
from csdseg.files import atomic as io
from csdseg.cli import main
from csdseg.data import build_source
from csdseg.data.source import DataError
from csdseg.engine.checkpoint import load_weights, save_final
from csdseg.stages.cam_model import build_cam_model
from csdseg.runs import RunDir
from csdseg.stages import train_cam
from test_resume import PRESET, overrides

VAL = ["data.train_split=val", "data.infer_split=val", "train.batch_size=4", "train.max_steps=2"]


def cli_error(capsys, stage: str, *args: str, preset: bool = True) -> str:
    """Run ``csdseg stage ...``; it must exit 2 with exactly one error line, returned."""
    code = main([stage, *(["-c", PRESET] if preset else []), *args])
    err = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert code == 2 and len(err) == 1, (code, err)
    assert err[0].startswith(f"csdseg {stage}: error: ")
    return err[0][len(f"csdseg {stage}: error: "):]


@pytest.fixture
def data(synth_root: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic dataset that a test may damage."""
    return Path(shutil.copytree(synth_root, tmp_path / "data"))


def train_args(root: Path, run_root: Path, *extra: str) -> list[str]:
    return overrides(root, run_root, *VAL, *extra)


# --- dataset layout and lists ----------------------------------------------------------------

def test_missing_dataset_root(tmp_path, capsys):
    msg = cli_error(capsys, "train-cam", *train_args(tmp_path / "nowhere", tmp_path / "runs"))
    assert msg == f"dataset root {tmp_path / 'nowhere'} does not exist; set data.root=/path/to/VOC2012"
    assert not (tmp_path / "runs").exists()


def test_wrong_layout(data, tmp_path, capsys):
    shutil.rmtree(data / "JPEGImages")
    msg = cli_error(capsys, "train-cam", *train_args(data, tmp_path / "runs"))
    assert msg.startswith(f"{data} is not in the VOC layout: JPEGImages/ is missing")


def test_split_naming_absent_images_fails_before_training(data, tmp_path, capsys):
    for name in ("syn_val_000002.jpg", "syn_val_000005.jpg"):
        (data / "JPEGImages" / name).unlink()
    msg = cli_error(capsys, "train-cam", *train_args(data, tmp_path / "runs"))
    assert msg == (f"2 of 8 image(s) of this split are missing, e.g. "
                   f"{data / 'JPEGImages' / 'syn_val_000002.jpg'}; check data.root or remove "
                   "them from the split list")
    assert not (tmp_path / "runs").exists()


def test_unknown_split(data, tmp_path, capsys):
    msg = cli_error(capsys, "train-cam", *train_args(data, tmp_path, "data.train_split=nope"))
    assert msg.startswith(f"split 'nope' not found: looked for "
                          f"{data / 'ImageSets' / 'Segmentation' / 'nope.txt'}")


def test_empty_split_list(data, tmp_path, capsys):
    (data / "ImageSets" / "Segmentation" / "empty.txt").write_text("\n")
    msg = cli_error(capsys, "train-cam", *train_args(data, tmp_path, "data.train_split=empty"))
    assert msg == f"split list {data / 'ImageSets' / 'Segmentation' / 'empty.txt'} is empty"


# --- images --------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_image_stops_training_naming_it(data, tmp_path, capsys, damage):
    path = data / "JPEGImages" / "syn_val_000003.jpg"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else b"not a jpeg at all")
    # num_workers=1: the error crosses a DataLoader worker and must still be one line
    msg = cli_error(capsys, "train-cam", *train_args(data, tmp_path, "train.max_steps=0",
                                                     "data.num_workers=1"))
    problem = ("is corrupt or truncated (" if damage == "truncated" else
               "is not an image file (no format PIL reads starts with b'not a jpeg at al'); ")
    assert msg.startswith(f"image {path} {problem}")
    assert msg.endswith("replace or remove it, or set data.skip_bad_images=true to leave it out")
    assert not RunDir(tmp_path / "synthetic_irn").checkpoint("cam").exists()


def test_skip_bad_images_leaves_them_out_and_reports_them(data, tmp_path, caplog):
    (data / "JPEGImages" / "syn_val_000003.jpg").write_bytes(b"\xff\xd8 truncated")
    cfg = tiny_config(data, tmp_path, *VAL, "data.skip_bad_images=true")
    source = build_source(cfg.data, "val")
    assert source.skipped == ["syn_val_000003"] and len(source) == 7
    assert "syn_val_000003" not in source.ids and source.labels.shape == (7, source.num_classes)
    assert "left out 1 unreadable image(s): syn_val_000003" in caplog.text
    train_cam.run(cfg)  # trains on the 7 good images
    assert RunDir.from_config(cfg).checkpoint("cam").is_file()


# --- masks ---------------------------------------------------------------------------------

def _mask_case(data: Path, tmp_path: Path, array: np.ndarray) -> tuple[str, Path]:
    path = data / "SegmentationClass" / "syn_val_000001.png"
    Image.fromarray(array).save(path)
    source = build_source(tiny_config(data, tmp_path).data, "val")
    with pytest.raises(DataError) as info:
        source.load_mask("syn_val_000001")
    return str(info.value), path


def test_mask_values_outside_classes(data, tmp_path):
    mask = np.zeros((64, 64), np.uint8)
    mask[5, 5], mask[6, 6] = 21, 128
    msg, path = _mask_case(data, tmp_path, mask)
    assert msg == (f"mask {path} has values [21, 128] outside 0..20 and 255; masks hold class "
                   "indices, not colours")


def test_colour_mask(data, tmp_path):
    msg, path = _mask_case(data, tmp_path, np.zeros((64, 64, 3), np.uint8))
    assert msg == f"mask {path} must be a single-channel (palette or L) PNG, got shape (64, 64, 3)"


def test_mask_size_differs_from_image(data, tmp_path):
    image = data / "JPEGImages" / "syn_val_000001.jpg"
    w, h = Image.open(image).size
    msg, path = _mask_case(data, tmp_path, np.zeros((h + 1, w), np.uint8))
    assert msg == (f"mask {path} is {w}x{h + 1} but its image {image} is {w}x{h}; "
                   "masks must match their image")


# --- image-level labels --------------------------------------------------------------------

def _labels(data: Path) -> dict:
    return np.load(data / "cls_labels.npy", allow_pickle=True).item()


def test_label_file_missing_an_id(data, tmp_path, capsys):
    table = _labels(data)
    del table["syn_val_000004"]
    np.save(tmp_path / "labels.npy", table)
    msg = cli_error(capsys, "train-cam",
                    *train_args(data, tmp_path, f"data.label_file={tmp_path / 'labels.npy'}"))
    assert msg == (f"label file {tmp_path / 'labels.npy'} has no labels for 1 image(s), e.g. "
                   "syn_val_000004; derive labels with `csdseg prepare` or fix the split list")


def test_label_vector_of_wrong_length(data, tmp_path, capsys):
    table = _labels(data)
    table["syn_val_000004"] = np.zeros(19, np.float32)
    np.save(data / "cls_labels.npy", table)
    msg = cli_error(capsys, "train-cam", *train_args(data, tmp_path))
    assert msg == f"label file {data / 'cls_labels.npy'}: id syn_val_000004 has 19 labels, expected 20"


def test_label_file_not_a_dict(data, tmp_path, capsys):
    (data / "cls_labels.npy").write_bytes(b"garbage")
    msg = cli_error(capsys, "train-cam", *train_args(data, tmp_path))
    assert msg.startswith(f"label file {data / 'cls_labels.npy'} is not a .npy dict of id -> labels")


def test_image_with_no_positive_label(data, tmp_path, capsys):
    table = _labels(data)
    table["syn_val_000006"] = np.zeros(20, np.float32)
    np.save(data / "cls_labels.npy", table)
    msg = cli_error(capsys, "train-cam", *train_args(data, tmp_path))
    assert msg == (f"label file {data / 'cls_labels.npy'}: 1 image(s) have no positive label, "
                   "e.g. syn_val_000006; weak supervision needs at least one class per training "
                   "image: drop them from the split")


# --- checkpoints ---------------------------------------------------------------------------

@pytest.fixture
def cam_ckpt(tmp_path) -> Path:
    cfg = tiny_config(tmp_path, tmp_path)
    path = tmp_path / "cam.pt"
    save_final(path, build_cam_model(cfg.model, 20),
               {"model": cfg.model.name, "num_classes": 20})
    return path


def test_checkpoint_for_another_class_count(tmp_path, cam_ckpt):
    model = build_cam_model(tiny_config(tmp_path, tmp_path).model, 80)
    with pytest.raises(Exception, match=f"^checkpoint {cam_ckpt} was trained with num_classes=20, "
                       "but this run uses num_classes=80; point at the matching checkpoint or "
                       "retrain$"):
        load_weights(model, cam_ckpt, expect={"num_classes": 80})
    with pytest.raises(Exception, match=f"^checkpoint {cam_ckpt} does not fit this model "):
        load_weights(model, cam_ckpt)  # no metadata check: the shapes still disagree


def test_truncated_checkpoint(tmp_path, cam_ckpt):
    cam_ckpt.write_bytes(cam_ckpt.read_bytes()[:1000])
    with pytest.raises(Exception, match=f"^checkpoint {cam_ckpt} cannot be read .*; delete it "
                       "and retrain$"):
        load_weights(build_cam_model(tiny_config(tmp_path, tmp_path).model, 20), cam_ckpt)


def test_stage_input_missing(data, tmp_path, capsys):
    msg = cli_error(capsys, "make-cam", *train_args(data, tmp_path))
    ckpt = RunDir(tmp_path / "synthetic_irn").checkpoint("cam")
    assert msg == f"{ckpt} is missing or empty; run `csdseg train-cam` first"


# --- configuration and device --------------------------------------------------------------

@pytest.mark.parametrize("override, expected", [
    ("train.epoch=3", "unknown config key 'train.epoch' (did you mean 'train.epochs'?)"),
    ("train.epochs=three", "train.epochs: expected an integer, got 'three'"),
    ("train.epochs", "override 'train.epochs' must look like key=value, e.g. train.epochs=3"),
    ("device=tpu", "device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
])
def test_bad_config_values(tmp_path, capsys, override, expected):
    assert cli_error(capsys, "train-cam", *train_args(tmp_path, tmp_path, override)) == expected


def test_missing_config_file(tmp_path, capsys):
    msg = cli_error(capsys, "train-cam", "-c", str(tmp_path / "x.yaml"), preset=False)
    assert msg == (f"config file {tmp_path / 'x.yaml'} does not exist; the presets (-c NAME) are "
                   "coco_irn, coco_mct, msrc_irn, synthetic_irn, synthetic_irn_pretrained, synthetic_mct, "
                   "voc_irn, voc_mct")


def test_cuda_requested_without_cuda(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    msg = cli_error(capsys, "train-cam", *train_args(tmp_path, tmp_path, "device=cuda"))
    assert msg == ("device=cuda was requested but this machine has no CUDA device "
                   "(torch.cuda.is_available() is False); set device=cpu or device=auto")


def test_fewer_images_than_one_batch(data, tmp_path, capsys):
    msg = cli_error(capsys, "train-cam", *train_args(data, tmp_path, "train.batch_size=16"))
    assert msg == ("train_cam: 8 training images is fewer than one batch of 16; "
                   "lower train.batch_size")


# --- the file system -----------------------------------------------------------------------

def test_run_root_not_writable(data, tmp_path, capsys):
    # tests run as root in CI, where chmod cannot forbid writes: a path below a file fails alike
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    msg = cli_error(capsys, "train-cam", *train_args(data, blocker / "sub"))
    assert msg.startswith(f"cannot write or read {blocker}")
    assert msg.endswith("; check the path, its permissions and free space")


def _disk_full(_fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_keeps_old_content_and_leaves_no_temp(tmp_path, monkeypatch):
    old, new = tmp_path / "old.txt", tmp_path / "new.txt"
    old.write_text("good")
    monkeypatch.setattr(io.os, "fsync", _disk_full)
    for target in (old, new):
        with pytest.raises(OSError) as info:
            io.atomic_write_text(target, "half")
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert old.read_text() == "good" and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.txt"]


def test_disk_full_through_the_cli(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(io.os, "fsync", _disk_full)
    msg = cli_error(capsys, "train-cam", *train_args(data, tmp_path))
    run = RunDir(tmp_path / "synthetic_irn")
    config = run.config("train_cam")
    assert msg.startswith(f"cannot write {config}: no space left on the device in "
                          f"{config.parent} (")
    assert " free there, this file needs " in msg
    assert msg.endswith("; free some space there or set run_root= to a folder on another disk, "
                        "then rerun the same command")
    run.release()  # the CLI ran in this process, which holds the run's lock until it exits
    assert [p for p in run.root.rglob("*") if p.is_file()] == []
    monkeypatch.undo()  # space freed: the same command now completes
    assert main(["train-cam", "-c", PRESET, *train_args(data, tmp_path)]) == 0
    assert run.checkpoint("cam").is_file()
