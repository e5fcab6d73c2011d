"""Checkpoints that let a killed run continue exactly where it stopped.

A resumable checkpoint holds the model, optimiser, gradient scaler, RNG states, the global step
and epoch, and ``extra``: state the training step keeps itself (``{"step_fn": ...}``, e.g.
CSD's EMA teacher: csdseg/engine/loop.py); the data order is a pure function of (seed, epoch),
so the step is the sampler position. A final checkpoint holds only what inference needs:
weights plus model metadata, from which :func:`load_seg_model` rebuilds a segmentation network.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from csdseg.errors import StageError
from csdseg.files.atomic import atomic_torch_save


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # a checkpoint from a machine with more GPUs: this one's devices take the first states
        # (set_rng_state_all would stop at an invalid device ordinal)
        torch.cuda.set_rng_state_all(state["cuda"][:torch.cuda.device_count()])


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def save_training_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scaler: torch.amp.GradScaler | None, step: int, epoch: int,
                        config: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    atomic_torch_save(path, {
        "model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(), "step": step, "epoch": epoch, "config": config,
        "extra": extra or {},
    })


def save_final(path: Path, model: torch.nn.Module, meta: dict[str, Any]) -> None:
    """Weights plus what it takes to rebuild the model: name, class count, class names."""
    atomic_torch_save(path, {"model": unwrap(model).state_dict(), "meta": meta})


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise StageError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - truncated or foreign files get one clear message
        raise StageError(f"checkpoint {path} cannot be read ({exc}); delete it and retrain") from None


def load_weights(model: torch.nn.Module, path: Path, expect: dict[str, Any] | None = None) -> dict:
    """Load a checkpoint's weights, refusing one made for another model or class count."""
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        bare = (isinstance(ckpt, dict) and bool(ckpt)
                and all(torch.is_tensor(v) for v in ckpt.values()))
        what = ("a bare state dict (backbone weights go in model.pretrained=)" if bare
                else f"a {type(ckpt).__name__} without 'model' weights")
        raise StageError(f"checkpoint {path} is not a csdseg checkpoint: it holds {what}; point "
                         "at a checkpoints/<name>.pt that csdseg wrote")
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else {}
    for key, value in (expect or {}).items():
        if key in meta and meta[key] != value:
            raise StageError(
                f"checkpoint {path} was trained with {key}={meta[key]!r}, but this run uses "
                f"{key}={value!r}; point at the matching checkpoint or retrain"
            )
    try:
        unwrap(model).load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        from csdseg.models.pretrained import state_dict_mismatch

        raise StageError(f"checkpoint {path} does not fit this model ({state_dict_mismatch(exc)});"
                         " point at the checkpoint of this model and class count, or retrain"
                         ) from None
    return meta


def load_seg_model(path: Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a trained segmentation network from its final checkpoint alone (eval mode).

    The checkpoint's meta must carry ``model``, ``num_classes`` (foreground K), ``class_names``
    and ``model_config`` (the constructor arguments), as train-seg writes them.
    """
    # imported here: the checkpoint format needs no model code until a model is rebuilt
    from csdseg.models.deeplab import SEG_MODELS, build_seg_model

    ckpt = load_checkpoint(Path(path))
    meta = ckpt.get("meta", {})
    missing = [k for k in ("model", "num_classes", "class_names", "model_config") if k not in meta]
    if missing or meta.get("model") not in SEG_MODELS:
        raise StageError(f"checkpoint {path} is not a segmentation checkpoint written by "
                         f"`csdseg train-seg` (meta lacks {missing or ['a known model name']})")
    options = dict(meta["model_config"])
    if "freeze_bn" in options:  # written before DeepLab-v2's option took seg.frozen_bn's name
        options["frozen_bn"] = options.pop("freeze_bn")
    model = build_seg_model(meta["model"], meta["num_classes"], pretrained="none", **options)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise StageError(f"checkpoint {path} does not fit {meta['model']} "
                         f"({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), meta
