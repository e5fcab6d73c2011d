"""make-cam's engines (cam.backend): ONNX Runtime computes the maps torch does, and every
case it cannot take (no package, a model that does not export) falls back to torch."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from conftest import tiny_config
from csdseg.files.cam import load_cam
from csdseg.config import ModelConfig
from csdseg.data import build_source
from csdseg.ops.cam_backend import cam_function
from csdseg.runs import RunDir
from csdseg.stages import make_cam, train_cam
from csdseg.stages.cam_model import build_cam_model

CPU = torch.device("cpu")
needs_ort = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                               reason="onnxruntime is not installed (pip install 'csdseg[ort]')")


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_cam_model(ModelConfig(name=name, pretrained="none"), 3).eval()


@needs_ort
@pytest.mark.parametrize("name", ["resnet10t_cam", "efficientnet_lite0_cam"])
def test_onnxruntime_maps_equal_torch_maps_at_every_size(name, one_thread):
    model = _model(name)
    fn, used = cam_function(model, "onnxruntime", CPU)
    assert used == "onnxruntime"
    for size in ((96, 128), (72, 200), (64, 64)):  # one export serves every scale
        x = torch.randn(2, 3, *size)
        with torch.inference_mode():
            want = model.cam(x)
        got = fn(x)
        assert got.shape == want.shape
        assert float((got - want).abs().max()) <= 1e-5 * float(want.abs().max()), size


@needs_ort
def test_a_model_that_does_not_export_falls_back_to_torch(caplog):
    model = _model("mctformer_v2_tiny")
    with caplog.at_level("WARNING", logger="csdseg.make_cam"):
        fn, used = cam_function(model, "onnxruntime", CPU)
    assert used == "torch" and "MCTformer does not export to ONNX" in caplog.text
    assert "\n" not in caplog.records[-1].getMessage()  # one line, not the exporter's dump
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        # channels_last vs contiguous: the same maths through other kernels, so equal within
        # fp32 rounding, not bit for bit (AVX2 and AVX-512 machines differ: docs/reliability.md)
        torch.testing.assert_close(fn(x), model.cam(x), rtol=1e-4, atol=1e-5)
    caplog.clear()
    assert cam_function(model, "auto", CPU)[1] == "torch" and not caplog.records  # auto: quiet


def test_without_the_package_onnxruntime_falls_back_naming_it(monkeypatch, caplog):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with caplog.at_level("WARNING", logger="csdseg.make_cam"):
        _, used = cam_function(_model("resnet10t_cam"), "onnxruntime", CPU)
    assert used == "torch" and "pip install 'csdseg[ort]'" in caplog.text
    assert cam_function(_model("resnet10t_cam"), "torch", CPU)[1] == "torch"
    with pytest.raises(ValueError, match="cam.backend must be one of torch, onnxruntime, auto"):
        cam_function(_model("resnet10t_cam"), "openvino", CPU)


@needs_ort
def test_make_cam_with_onnxruntime_writes_the_torch_maps(synth_root, tmp_path, one_thread):
    """The whole stage (multi-scale + flip, normalisation, the file) on either engine."""
    cfg = tiny_config(synth_root, tmp_path, "train.max_steps=1", "data.infer_split=val")
    train_cam.run(cfg)
    make_cam.run(cfg)
    ort_cfg = tiny_config(synth_root, tmp_path, "train.max_steps=1", "data.infer_split=val",
                          "cam.backend=onnxruntime")
    ort_dir = RunDir.from_config(ort_cfg).cam_dir
    torch_dir = ort_dir.with_name("cam_torch")
    ort_dir.rename(torch_dir)
    make_cam.run(ort_cfg)
    for image_id in build_source(cfg.data, "val").ids:
        a, b = load_cam(torch_dir / f"{image_id}.npy"), load_cam(ort_dir / f"{image_id}.npy")
        assert np.array_equal(a.keys, b.keys)
        for name in ("cam", "high_res"):  # max-normalised: 1 is the maximum
            np.testing.assert_allclose(getattr(b, name), getattr(a, name), atol=1e-5)
