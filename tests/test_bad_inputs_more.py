"""More of the bad-input catalogue (docs/reliability.md): weights files given as
``model.pretrained=`` or ``train.init_from=`` that are truncated, foreign or for another model or
class count; a label file of another dataset; images of unusual modes; a read-only run folder.
Each ends in one line ``csdseg <stage>: error: ...`` with exit status 2 and nothing written (or,
for the image modes that have one standard reading, works)."""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from conftest import tiny_config
from csdseg.files import atomic as io
from csdseg.engine.checkpoint import save_final
from csdseg.stages.cam_model import build_cam_model
from test_bad_inputs import VAL, cli_error, train_args
from test_resume import PRESET

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
ARCH = "resnet10t.c3_in1k"  # the timm model behind resnet10t_cam (the synthetic preset's)


@pytest.fixture
def data(synth_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(synth_root, tmp_path / "data"))


def nothing_written(run_root: Path) -> bool:
    run = run_root / "synthetic_irn"
    return not run.exists() or not [p for p in run.rglob("*") if p.is_file()]


# --- model.pretrained= a weights file ------------------------------------------------------

@pytest.fixture
def weights(tmp_path) -> Path:
    """A genuine resnet10t state dict (the synthetic preset's backbone)."""
    path = tmp_path / "resnet10t.pth"
    torch.save(timm.create_model("resnet10t", pretrained=False).state_dict(), path)
    return path


def pretrained_error(capsys, synth_root, tmp_path, path: Path) -> str:
    runs = tmp_path / "runs"
    msg = cli_error(capsys, "train-cam", *train_args(synth_root, runs, f"model.pretrained={path}"))
    assert nothing_written(runs)
    return msg


def test_truncated_pretrained_weights(synth_root, tmp_path, capsys, weights):
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    msg = pretrained_error(capsys, synth_root, tmp_path, weights)
    assert msg.startswith(f"weights file {weights} cannot be read (")
    assert msg.endswith("); it is truncated or not a PyTorch (.pth) or safetensors file: "
                        "download it again")


def test_garbage_pretrained_weights(synth_root, tmp_path, capsys):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"<html>404 Not Found</html>")  # a failed download saved as .pth
    msg = pretrained_error(capsys, synth_root, tmp_path, path)
    assert msg.startswith(f"weights file {path} cannot be read (")


def test_pretrained_weights_of_another_architecture(synth_root, tmp_path, capsys):
    path = tmp_path / "mobilenet.pth"
    torch.save(timm.create_model("mobilenetv3_small_050", pretrained=False).state_dict(), path)
    msg = pretrained_error(capsys, synth_root, tmp_path, path)
    assert msg == (f"weights file {path} does not fit '{ARCH}' ('bn1.weight' is [16] in the "
                   f"file but [64] in the model; 3 more tensors differ): it holds another "
                   f"architecture's weights; give the weights of {ARCH}, or "
                   "model.pretrained=hub or none")


def test_pretrained_state_dict_with_no_matching_tensor(synth_root, tmp_path, capsys):
    """timm loads backbones non-strictly: without the check, such a file loads nothing, silently."""
    path = tmp_path / "encoder.pth"
    torch.save({"encoder.stem.weight": torch.randn(8, 3, 3, 3),
                "encoder.head.bias": torch.randn(8)}, path)
    msg = pretrained_error(capsys, synth_root, tmp_path, path)
    assert msg == (f"weights file {path} has none of the tensors of '{ARCH}' (it holds e.g. "
                   "'encoder.stem.weight', 'encoder.head.bias'), whose tensors are named e.g. "
                   "'conv1.0.weight': it holds another architecture's weights; give the weights "
                   f"of {ARCH}, or model.pretrained=hub or none")


def test_pretrained_file_holding_a_tensor(synth_root, tmp_path, capsys):
    path = tmp_path / "t.pth"
    torch.save(torch.zeros(3), path)
    msg = pretrained_error(capsys, synth_root, tmp_path, path)
    assert msg == (f"weights file {path} holds a Tensor, not a state dict (tensor name -> "
                   f"tensor); give the weights of {ARCH} saved with "
                   "torch.save(model.state_dict(), path)")


def test_genuine_pretrained_weights_still_load(tmp_path, weights):
    cfg = tiny_config(tmp_path, tmp_path, f"model.pretrained={weights}")
    model = build_cam_model(cfg.model, 20)
    reference = torch.load(weights, weights_only=True)
    assert torch.equal(model.stage1[0][0].weight, reference["conv1.0.weight"])


# --- train.init_from= a checkpoint ---------------------------------------------------------

def init_from_error(capsys, synth_root, tmp_path, path: Path) -> str:
    runs = tmp_path / "runs"
    msg = cli_error(capsys, "train-cam", *train_args(synth_root, runs, f"train.init_from={path}"))
    assert nothing_written(runs)
    return msg


def test_init_from_a_checkpoint_of_another_model(synth_root, tmp_path, capsys):
    cfg = tiny_config(synth_root, tmp_path, "model.name=resnet18_cam")
    path = tmp_path / "cam.pt"
    save_final(path, build_cam_model(cfg.model, 20), {"model": "resnet18_cam", "num_classes": 20})
    msg = init_from_error(capsys, synth_root, tmp_path, path)
    assert msg == (f"checkpoint {path} was trained with model='resnet18_cam', but this run uses "
                   "model='resnet10t_cam'; point at the matching checkpoint or retrain")


def test_init_from_a_checkpoint_of_another_model_without_metadata(synth_root, tmp_path, capsys):
    cfg = tiny_config(synth_root, tmp_path, "model.name=resnet18_cam")
    path = tmp_path / "cam.pt"
    save_final(path, build_cam_model(cfg.model, 20), {})
    msg = init_from_error(capsys, synth_root, tmp_path, path)
    assert msg.startswith(f"checkpoint {path} does not fit this model (")
    assert msg.endswith("; point at the checkpoint of this model and class count, or retrain")
    assert "Error(s) in loading" not in msg  # the concrete reason, not torch's header line


def test_init_from_a_checkpoint_with_another_class_count(synth_root, tmp_path, capsys):
    cfg = tiny_config(synth_root, tmp_path)
    path = tmp_path / "coco_cam.pt"
    save_final(path, build_cam_model(cfg.model, 80), {"model": "resnet10t_cam", "num_classes": 80})
    msg = init_from_error(capsys, synth_root, tmp_path, path)
    assert msg == (f"checkpoint {path} was trained with num_classes=80, but this run uses "
                   "num_classes=20; point at the matching checkpoint or retrain")


@pytest.mark.parametrize("content, holds", [
    ("state_dict", "a bare state dict (backbone weights go in model.pretrained=)"),
    ("list", "a list without 'model' weights"),
])
def test_init_from_a_file_that_is_not_a_csdseg_checkpoint(synth_root, tmp_path, capsys, content,
                                                         holds):
    path = tmp_path / "weights.pt"
    obj = timm.create_model("resnet10t", pretrained=False).state_dict() if content == "state_dict" \
        else [1, 2, 3]
    torch.save(obj, path)
    msg = init_from_error(capsys, synth_root, tmp_path, path)
    assert msg == (f"checkpoint {path} is not a csdseg checkpoint: it holds {holds}; point at a "
                   "checkpoints/<name>.pt that csdseg wrote")


def test_init_from_a_truncated_checkpoint(synth_root, tmp_path, capsys):
    path = tmp_path / "cam.pt"
    save_final(path, build_cam_model(tiny_config(synth_root, tmp_path).model, 20),
               {"model": "resnet10t_cam", "num_classes": 20})
    path.write_bytes(path.read_bytes()[:2000])
    msg = init_from_error(capsys, synth_root, tmp_path, path)
    assert msg.startswith(f"checkpoint {path} cannot be read (") and \
        msg.endswith("; delete it and retrain")


# --- labels --------------------------------------------------------------------------------

def test_label_file_of_another_dataset(data, tmp_path, capsys):
    """Its ids match none of the split's (here: COCO-style ids for the synthetic VOC split)."""
    table = {f"COCO_train2014_{i:012d}": np.eye(20, dtype=np.float32)[i % 20] for i in range(50)}
    np.save(tmp_path / "coco_labels.npy", table)
    msg = cli_error(capsys, "train-cam",
                    *train_args(data, tmp_path / "runs",
                                f"data.label_file={tmp_path / 'coco_labels.npy'}"))
    assert msg.startswith(f"label file {tmp_path / 'coco_labels.npy'} has no labels for 8 "
                          "image(s), e.g. syn_val_0000")
    assert msg.endswith("; derive labels with `csdseg prepare` or fix the split list")
    assert nothing_written(tmp_path / "runs")


# --- image modes (the rest: tests/test_image_modes.py) -------------------------------------

def test_32_bit_float_image_in_a_dataset_stops_training_naming_it(data, tmp_path, capsys):
    path = data / "JPEGImages" / "syn_val_000003.jpg"  # PIL reads by content, not by suffix
    Image.fromarray(np.zeros((64, 64), np.float32)).save(path, format="TIFF")
    msg = cli_error(capsys, "train-cam", *train_args(data, tmp_path / "runs", "train.max_steps=0"))
    assert msg.startswith(f"image {path} has 32-bit float pixels (mode F)")


# --- the run folder ------------------------------------------------------------------------

def _read_only_below(monkeypatch, folder: Path, code: int = errno.EROFS) -> None:
    """Creating any file below ``folder`` fails with ``code``, as on a read-only mount."""
    real_open = io.os.open

    def fake_open(path, flags, *args, **kwargs):
        if str(path).startswith(str(folder)) and flags & os.O_CREAT:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(io.os, "open", fake_open)


def test_run_folder_on_a_read_only_path(data, tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    run = runs / "synthetic_irn"
    run.mkdir(parents=True)  # e.g. a finished run folder on a read-only (archive) mount
    _read_only_below(monkeypatch, runs)
    msg = cli_error(capsys, "train-cam", *train_args(data, runs))
    assert msg.startswith(f"cannot write {run / '.lock'}: read-only file system in {run} (")
    assert msg.endswith(" free there); set run_root= (or the output path) to a writable folder, "
                        "then rerun the same command")
    assert list(run.iterdir()) == []
    monkeypatch.undo()
    assert cli_ok(data, tmp_path / "elsewhere")  # run_root= a writable folder: it runs


def test_run_root_below_a_read_only_folder(data, tmp_path, capsys, monkeypatch):
    real_mkdir = Path.mkdir
    runs = tmp_path / "ro" / "runs"

    def mkdir(self, *args, **kwargs):  # the parent (tmp_path/ro) is a read-only mount
        if str(self).startswith(str(tmp_path / "ro" / "")):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(Path, "mkdir", mkdir)
    msg = cli_error(capsys, "train-cam", *train_args(data, runs))
    assert msg.startswith(f"cannot write {runs / 'synthetic_irn' / '.lock'}: read-only file system "
                          f"in {tmp_path / 'ro'} (")


@pytest.mark.skipif(AS_ROOT, reason="chmod does not stop root; the patched tests cover it")
def test_run_folder_without_write_permission(data, tmp_path, capsys):
    run = tmp_path / "runs" / "synthetic_irn"
    run.mkdir(parents=True)
    run.chmod(0o500)
    try:
        msg = cli_error(capsys, "train-cam", *train_args(data, tmp_path / "runs"))
    finally:
        run.chmod(0o700)
    assert msg.startswith(f"cannot write {run / '.lock'}: permission denied in {run} (")
    assert f"chmod u+w {run}" in msg


def cli_ok(data: Path, run_root: Path) -> bool:
    from csdseg.cli import main
    from csdseg.runs import RunDir

    code = main(["train-cam", "-c", PRESET, *train_args(data, run_root)])
    run = RunDir(run_root / "synthetic_irn")
    run.release()
    return code == 0 and run.checkpoint("cam").is_file()


assert VAL  # the same tiny training as tests/test_bad_inputs.py
