"""The ``device`` setting decides where tensors live; library code never moves them to a GPU itself."""
from __future__ import annotations

import torch

from csdseg.errors import ConfigError


def resolve_device(spec: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; ``cuda`` without CUDA is a clear error."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={spec} was requested but this machine has no CUDA device "
                "(torch.cuda.is_available() is False); set device=cpu or device=auto"
            )
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device={spec}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        return device
    raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got '{spec}'")


def amp_enabled(device: torch.device, wanted: bool) -> bool:
    """Mixed precision only where it pays: on CUDA, and only when the config asks for it."""
    return wanted and device.type == "cuda"
