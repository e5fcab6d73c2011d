"""The two promises of docs/reliability.md ("What is bit-identical and what is within a
tolerance"), on a tiny CAM network's forward pass:

- one machine, one thread count, one code path: a rerun is bit-identical (``torch.equal``);
- another thread count or memory format (standing in for another CPU, ONNX Runtime or CUDA,
  which run other kernels the same way): within ``MAP_RTOL`` of the map's maximum;
- another instruction set, for real: the same maps computed by a child process whose ATen and
  oneDNN kernels are held to scalar / SSE4.1 code, within ``MAP_RTOL`` of this process's.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from csdseg.config import ModelConfig
from csdseg.stages.cam_model import build_cam_model

# The tolerance docs/reliability.md states for fp32 maps from other kernels: a change in the
# order of a sum moves the last bits, about 1e-6 of the maximum here, far below this.
MAP_RTOL = 1e-4


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_cam_model(ModelConfig(name="resnet10t_cam", pretrained="none"), 3).eval()


def _input() -> torch.Tensor:
    return torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(1))


def _maps(model: torch.nn.Module, x: torch.Tensor, threads: int) -> torch.Tensor:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            return model.cam(x)
    finally:
        torch.set_num_threads(before)


def _assert_within(got: torch.Tensor, want: torch.Tensor) -> None:
    scale = float(want.abs().max())
    assert scale > 0 and got.shape == want.shape
    err = float((got - want).abs().max())
    assert err <= MAP_RTOL * scale, f"max |diff| {err:.3g} is over {MAP_RTOL:g} of {scale:.3g}"


@pytest.mark.parametrize("threads", [1, 2])
def test_a_rerun_with_the_same_threads_is_bit_identical(threads):
    x = _input()
    first = _maps(_model(), x, threads)
    assert torch.equal(_maps(_model(), x, threads), first)  # a fresh model from the same seed
    model = _model()
    assert torch.equal(_maps(model, x, threads), _maps(model, x, threads))


def test_another_thread_count_is_within_the_stated_tolerance():
    model, x = _model(), _input()
    _assert_within(_maps(model, x, 2), _maps(model, x, 1))


def test_another_memory_format_is_within_the_stated_tolerance():
    """channels_last is what make-cam's torch engine runs; the contiguous forward is the
    reference other tests compute: other kernels, the same maths."""
    model, x = _model(), _input()
    want = _maps(model, x, 1)
    model.to(memory_format=torch.channels_last)
    _assert_within(_maps(model, x.contiguous(memory_format=torch.channels_last), 1), want)


# The child computes the maps of the same model and input and saves them with its kernels' ISA.
CHILD = """
import sys, torch
from test_reproducibility_promises import _input, _maps, _model
torch.save({"isa": torch.backends.cpu.get_cpu_capability(), "maps": _maps(_model(), _input(), 1)},
           sys.argv[1])
"""


def test_another_instruction_set_is_within_the_stated_tolerance(tmp_path):
    """CI runs on AVX-512 Intel or AVX2 AMD machines; a child held to the scalar kernels stands
    in for the machine this one is not (measured on AVX2: 2e-6 of the maximum, not bit-equal)."""
    here = Path(__file__).resolve().parent
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default", ONEDNN_MAX_CPU_ISA="SSE41",
               PYTHONPATH=os.pathsep.join([str(here.parent), str(here)]), OMP_NUM_THREADS="1")
    out = tmp_path / "maps.pt"
    subprocess.run([sys.executable, "-c", CHILD, str(out)], env=env, check=True, timeout=300)
    child = torch.load(out)
    assert child["isa"] == "DEFAULT"  # the override took effect: other kernels really ran
    _assert_within(child["maps"], _maps(_model(), _input(), 1))


def test_the_tolerance_still_catches_a_real_change():
    """Not vacuous: a 1% change of one weight moves the maps by far more than MAP_RTOL."""
    model, x = _model(), _input()
    want = _maps(model, x, 1)
    with torch.no_grad():
        next(model.parameters()).mul_(1.01)
    with pytest.raises(AssertionError):
        _assert_within(_maps(model, x, 1), want)
