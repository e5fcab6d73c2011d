"""The engine make-cam runs the CAM network with (``cam.backend``).

``torch`` (the default) calls ``model.cam`` on channels-last tensors on a CPU. ``onnxruntime``
exports ``model.cam`` once (in memory, dynamic batch and image size) and runs it with ONNX
Runtime's CPU kernels, which fuse batch norm and ReLU into the convolutions: on this project's
2-core machines it is the faster engine for the ResNet CAMs (docs/benchmarks.md, measured
against the torch path in the same run), with maps within 1e-5 of torch's, relative to their
maximum (tests/test_cam_backend.py; the MCTformer models do not export and keep torch). ``auto`` takes onnxruntime where it is installed and the device is
a CPU, torch elsewhere. onnxruntime is an optional extra (``pip install 'csdseg[ort]'``); when
it is missing, or the model does not export, or the device is a GPU, make-cam says so once and
uses torch, so no setting of this key can fail a run.
"""
from __future__ import annotations

import importlib.util
import inspect
import io
import logging
import warnings
from collections.abc import Callable

import torch
import torch.nn as nn

CamFn = Callable[[torch.Tensor], torch.Tensor]
BACKENDS = ("torch", "onnxruntime", "auto")
log = logging.getLogger("csdseg.make_cam")


class _CamOnly(nn.Module):
    """``model.cam`` as a module's forward, for the exporter."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.cam(x)


def torch_cam_fn(model: nn.Module, device: torch.device) -> CamFn:
    if device.type == "cpu":  # oneDNN convolutions run faster on channels-last tensors
        return lambda x: model.cam(x.contiguous(memory_format=torch.channels_last))
    return model.cam


def onnx_bytes(model: nn.Module, example: torch.Tensor) -> bytes:
    """``model.cam`` as an ONNX graph with dynamic batch, height and width."""
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore")
        # the TorchScript exporter: torch >= 2.5 defaults to the dynamo one, older has no choice
        legacy = ({"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters
                  else {})
        torch.onnx.export(_CamOnly(model).eval(), (example,), buf, input_names=["x"],
                          output_names=["maps"], opset_version=17, **legacy,
                          dynamic_axes={"x": {0: "views", 2: "height", 3: "width"},
                                        "maps": {0: "views", 2: "rows", 3: "cols"}})
    return buf.getvalue()


def onnxruntime_cam_fn(model: nn.Module, threads: int | None = None) -> CamFn:
    """``model.cam`` run by ONNX Runtime on the CPU (``threads``: torch's count by default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    # no memory pattern: it is planned per input shape, and every scale and image size
    # differs; with it the process peaked at 1.29x the official path's memory, without 1.06x
    options.enable_mem_pattern = False
    example = torch.zeros(2, 3, 64, 64)
    session = ort.InferenceSession(onnx_bytes(model, example), options,
                                   providers=["CPUExecutionProvider"])

    def cam(x: torch.Tensor) -> torch.Tensor:
        out = session.run(None, {"x": x.detach().cpu().contiguous().numpy()})[0]
        return torch.from_numpy(out)
    return cam


def cam_function(model: nn.Module, backend: str, device: torch.device) -> tuple[CamFn, str]:
    """(the function make-cam calls on each [V, 3, h, w] batch, the backend it uses)."""
    if backend not in BACKENDS:
        raise ValueError(f"cam.backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
    if backend == "torch":
        return torch_cam_fn(model, device), "torch"
    why = None
    if device.type != "cpu":
        why = f"it runs on CPUs only and the device is {device}"
    elif importlib.util.find_spec("onnxruntime") is None:
        why = "the package onnxruntime is not installed (pip install 'csdseg[ort]')"
    if why is None:
        try:
            return onnxruntime_cam_fn(model), "onnxruntime"
        except ImportError as exc:  # installed but broken (a missing shared library)
            why = f"onnxruntime does not import ({exc})"
        except Exception as exc:  # an operator the exporter or the runtime lacks  # noqa: BLE001
            first = (str(exc).splitlines() or [""])[0]
            why = f"{type(model).__name__} does not export to ONNX ({type(exc).__name__}: {first})"
    if backend == "onnxruntime":  # asked for by name: say why it is not used
        log.warning("cam.backend=onnxruntime: %s; make-cam uses torch", why)
    return torch_cam_fn(model, device), "torch"
