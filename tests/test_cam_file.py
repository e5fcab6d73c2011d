"""The CAM file (csdseg.files.cam): both encodings, the official IRN file, clear errors, and the
golden check that official IRN's downstream reads accept csdseg's ``cam.format=irn`` files."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from conftest import tiny_config
from csdseg.files.cam import CamFileError, CamRecord, load_cam, save_cam
from csdseg.config import ConfigError, load_config
from csdseg.data import build_source
from csdseg.data.transforms import normalize, rescale
from csdseg.models.cam_resnet import resnet50_cam
from csdseg.ops.cam import multiscale_cam
from csdseg.ops.random_walk import random_walk
from csdseg.runs import RunDir
from csdseg.stages import make_cam, train_cam
from golden.seeded import SEED_CAM, assert_map_close, golden, seeded_model

FIX = "delete it and rerun `csdseg make-cam`"


def _maps(k: int = 2, h: int = 13, w: int = 18, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    keys = np.sort(rng.choice(20, k, replace=False))
    high = rng.random((k, h, w), dtype=np.float32)
    return keys, np.ascontiguousarray(high[:, ::4, ::4]), high


def _raw(path) -> dict:
    return np.load(path, allow_pickle=True).item()


@pytest.mark.parametrize("fmt", ["npy", "irn"])
def test_round_trip(tmp_path, fmt: str) -> None:
    keys, cam, high = _maps()
    path = tmp_path / "a.npy"
    save_cam(path, keys, torch.from_numpy(cam), high, fmt=fmt)  # arrays or tensors in
    record = load_cam(path, num_classes=20)
    assert isinstance(record, CamRecord) and record.size == (13, 18)
    for got, want, dtype in ((record.keys, keys, np.int64), (record.cam, cam, np.float32),
                             (record.high_res, high, np.float32)):
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want)
    raw = _raw(path)
    assert list(raw) == ["keys", "cam", "high_res"]
    tensors = (torch.Tensor,) * 2 if fmt == "irn" else (np.ndarray,) * 2
    assert isinstance(raw["keys"], tensors[0]) and isinstance(raw["cam"], tensors[1])
    assert isinstance(raw["high_res"], np.ndarray)  # an array in both, as the official code
    if fmt == "irn":
        assert raw["keys"].dtype == torch.int64 and raw["cam"].dtype == torch.float32
        assert raw["cam"].device.type == "cpu" and raw["cam"].is_contiguous()


def test_empty_record_round_trips(tmp_path) -> None:
    """An image without classes: K' = 0 (keys [0], maps [0, h, w])."""
    for fmt in ("npy", "irn"):
        save_cam(tmp_path / f"{fmt}.npy", np.zeros(0, np.int64), np.zeros((0, 3, 4)),
                 np.zeros((0, 9, 13)), fmt=fmt)
        record = load_cam(tmp_path / f"{fmt}.npy")
        assert record.keys.shape == (0,) and record.cam.shape == (0, 3, 4)
        assert record.size == (9, 13)


def test_file_written_the_official_way_reads_identically(tmp_path) -> None:
    """The official make_cam.py saves {keys: torch.nonzero(label)[:, 0], cam: strided_cam.cpu(),
    high_res: highres_cam.cpu().numpy()}: the golden official maps, saved so, read back exactly."""
    ref = golden("irn")
    for i in range(3):
        label = torch.from_numpy(ref["labels"][i])
        official = {"keys": torch.nonzero(label)[:, 0], "cam": torch.from_numpy(ref[f"cam_{i}"]),
                    "high_res": ref[f"high_res_{i}"]}
        np.save(tmp_path / f"{i}.npy", official)
        record = load_cam(tmp_path / f"{i}.npy", num_classes=20)
        for name in ("keys", "cam", "high_res"):
            np.testing.assert_array_equal(getattr(record, name), ref[f"{name}_{i}"])


def test_truncated_file_says_which_and_what_to_do(tmp_path) -> None:
    path = tmp_path / "2007_000032.npy"
    save_cam(path, *_maps(), fmt="irn")
    path.write_bytes(path.read_bytes()[:-64])
    with pytest.raises(CamFileError, match="truncated") as err:
        load_cam(path)
    assert str(path) in str(err.value) and FIX in str(err.value)


def test_missing_key_is_named(tmp_path) -> None:
    path = tmp_path / "x.npy"
    keys, _, high = _maps()
    np.save(path, {"keys": keys, "high_res": high})
    with pytest.raises(CamFileError) as err:
        load_cam(path)
    msg = str(err.value)
    assert f"CAM file {path} has no 'cam' (it holds 'keys', 'high_res')" in msg and FIX in msg


@pytest.mark.parametrize("content, match", [
    (np.zeros((2, 3)), "holds an array float64 of shape"),
    ({"keys": np.array([1, 2]), "cam": np.zeros((1, 4, 5)), "high_res": np.zeros((2, 13, 18))},
     r"'cam' has shape \(1, 4, 5\) for 2 keys"),
    ({"keys": np.array([1]), "cam": np.zeros((1, 13, 18)), "high_res": np.zeros((1, 13, 18))},
     r"'cam' must be at stride 4, i.e. \(4, 5\)"),
    ({"keys": np.array([1.0]), "cam": np.zeros((1, 4, 5)), "high_res": np.zeros((1, 13, 18))},
     "'keys' must be integers"),
    ({"keys": np.array([3, 25]), "cam": np.zeros((2, 4, 5)), "high_res": np.zeros((2, 13, 18))},
     r"'keys' \[3, 25\] are outside 0..19"),
])
def test_malformed_files_are_refused(tmp_path, content, match: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, content)
    with pytest.raises(CamFileError, match=match) as err:
        load_cam(path, num_classes=20)
    assert str(path) in str(err.value) and FIX in str(err.value)


def test_missing_file_and_bad_writes(tmp_path) -> None:
    with pytest.raises(CamFileError, match="does not exist; run `csdseg make-cam` first"):
        load_cam(tmp_path / "none.npy")
    keys, cam, high = _maps()
    with pytest.raises(ValueError, match="cam.format must be one of npy, irn, got 'pt'"):
        save_cam(tmp_path / "a.npy", keys, cam, high, fmt="pt")
    with pytest.raises(ValueError, match="refusing to write CAM file .*'high_res' has shape"):
        save_cam(tmp_path / "a.npy", keys, cam, high[:1])
    assert not list(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="cam.format must be npy or irn, got 'pt'"):
        load_config(None, ["cam.format=pt"])


def test_make_cam_stage_writes_either_format(synth_root, tmp_path, one_thread) -> None:
    """``cam.format`` picks the encoding of make-cam's files; the maps are the same bits."""
    cfg = tiny_config(synth_root, tmp_path, "train.max_steps=1", "data.infer_split=val")
    train_cam.run(cfg)
    make_cam.run(cfg)
    npy = RunDir.from_config(cfg)
    irn_cfg = tiny_config(synth_root, tmp_path, "train.max_steps=1", "data.infer_split=val",
                          "name=irn_format", "cam.format=irn")
    irn = RunDir.from_config(irn_cfg)
    irn.checkpoint("cam").parent.mkdir(parents=True)
    shutil.copy(npy.checkpoint("cam"), irn.checkpoint("cam"))
    make_cam.run(irn_cfg)
    for image_id in build_source(cfg.data, "val").ids:
        raw = _raw(irn.cam_dir / f"{image_id}.npy")
        assert isinstance(raw["cam"], torch.Tensor) and isinstance(raw["keys"], torch.Tensor)
        assert isinstance(_raw(npy.cam_dir / f"{image_id}.npy")["cam"], np.ndarray)
        a, b = load_cam(npy.cam_dir / f"{image_id}.npy"), load_cam(irn.cam_dir / f"{image_id}.npy")
        for name in ("keys", "cam", "high_res"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("i", [0, 2])  # 83 x 97 and 100 x 75: neither a multiple of 4 or 16
def test_official_scripts_read_csdseg_irn_files(tmp_path, one_thread, i: int) -> None:
    """csdseg's make-cam maps of a golden image, written with cam.format=irn, read the way the
    official cam_to_ir_label.py / make_sem_seg_labels.py read a CAM file, give the official
    maps (and the official random walk, fed the official boundary)."""
    ref = golden("irn")
    model = seeded_model(resnet50_cam(20, "none"), SEED_CAM, "cam.")
    img = ref[f"images_{i}"]
    views = [torch.from_numpy(np.ascontiguousarray(np.stack([x, x[:, :, ::-1]])))
             for x in (normalize(rescale(img, s)) for s in ref["scales"])]
    keys = torch.from_numpy(np.nonzero(ref["labels"][i])[0])
    low, high = multiscale_cam(model.cam, views, img.shape[:2], keys, torch.device("cpu"), "max",
                               model.upsample, model.feature_stride)
    path = tmp_path / f"{i}.npy"
    save_cam(path, keys, low, high, fmt="irn")

    # as cam_to_ir_label.py (and eval_cam.py): high_res with NumPy, keys shifted and padded
    cam_dict = np.load(path, allow_pickle=True).item()
    cams = cam_dict["high_res"]
    lut = np.pad(cam_dict["keys"] + 1, (1, 0), mode="constant")
    assert isinstance(cams, np.ndarray) and cams.dtype == np.float32
    np.testing.assert_array_equal(lut, np.concatenate([[0], ref[f"keys_{i}"] + 1]))
    assert_map_close(cams, ref[f"high_res_{i}"], f"image {i} high_res")
    fg = np.pad(cams, ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=0.30)
    assert lut[np.argmax(fg, axis=0)].shape == img.shape[:2]

    # as make_sem_seg_labels.py: cam is a tensor it moves to the GPU (.cuda()) and walks
    cams = cam_dict["cam"]
    assert isinstance(cams, torch.Tensor) and callable(cams.cuda) and cams.dtype == torch.float32
    assert_map_close(cams, ref[f"cam_{i}"], f"image {i} cam")
    rw = random_walk(cams.to("cpu"), torch.from_numpy(ref[f"boundary_{i}"][0]))
    assert_map_close(rw, ref[f"rw_{i}"], f"image {i} random walk", rtol=2e-4)
