"""Creating timm backbones with ImageNet weights from the hub, a local file, or none.

``pretrained`` is ``"hub"`` (timm downloads, or reads its cache when ``HF_HUB_OFFLINE=1``),
``"none"`` (random init) or a path to a local weights file (``.pth``/``.safetensors``), loaded
through timm's own ``pretrained_cfg_overlay=dict(file=...)`` route so the key remapping timm
applies to hub weights applies to the file as well.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch.nn as nn

from csdseg.config import ConfigError

HUB_HOST = "huggingface.co"


def _hub_reachable(host: str = HUB_HOST, timeout: float = 3.0) -> bool:
    """One quick connection attempt: timm itself retries for about a minute before failing."""
    endpoint = os.environ.get("HF_ENDPOINT")
    if endpoint:
        host = urlparse(endpoint).hostname or host
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def offline_message(arch: str) -> str:
    return (
        f"cannot download ImageNet weights for '{arch}': the model hub is unreachable from this "
        "machine. Download them elsewhere and set model.pretrained=/path/to/weights.pth "
        "(or .safetensors); with weights already in the local Hugging Face cache, set "
        "HF_HUB_OFFLINE=1; or train from scratch with model.pretrained=none"
    )


def create_timm_model(arch: str, pretrained: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model(arch, ...)`` with our three ``pretrained`` modes and fast failures."""
    if pretrained == "none":
        return timm.create_model(arch, pretrained=False, **kwargs)
    if pretrained == "hub":
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
        if not offline and not _hub_reachable():
            raise ConfigError(offline_message(arch))
        try:
            return timm.create_model(arch, pretrained=True, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every hub failure gets the same advice
            raise ConfigError(f"{offline_message(arch)} ({type(exc).__name__})") from None
    path = Path(pretrained)
    if not path.is_file():
        raise ConfigError(
            f"model.pretrained={pretrained}: no such file; use hub, none, or a path to a weights file"
        )
    try:
        return timm.create_model(arch, pretrained=True,
                                 pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"weights file {path} does not fit '{arch}' ({first})") from None
