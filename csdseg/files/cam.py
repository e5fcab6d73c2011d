"""The CAM file ``cam/<id>.npy``: its one writer (make-cam) and its one reader (every later stage).

The format is IRN's: ``np.save`` of a pickled dict of three entries, for an image of H x W
pixels with K' present classes (K' may be 0):

- ``keys``: int64 [K'], the 0-based indices of the image's classes (ascending);
- ``cam``: float32 [K', ceil(H/4), ceil(W/4)], the stride-4 maps (the random walk's input);
- ``high_res``: float32 [K', H, W], the full-resolution maps (eval-cam, confident labels).

Two encodings of that dict, both read by :func:`load_cam` (``cam.format`` picks the written one):

- ``"npy"`` (the default): three NumPy arrays, so the file loads without torch;
- ``"irn"``: as the official IRN ``step/make_cam.py`` writes it, ``keys`` and ``cam`` CPU torch
  tensors and ``high_res`` an array, so the official ``cam_to_ir_label.py`` and
  ``make_sem_seg_labels.py`` (which moves ``cam`` to the GPU itself) can consume csdseg's CAMs.
  Loading such a file imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from csdseg.data.source import DataError
from csdseg.files.atomic import atomic_save_npy

FORMATS = ("npy", "irn")
ENTRIES = ("keys", "cam", "high_res")
FIX = "delete it and rerun `csdseg make-cam` (which remakes only the missing files)"


class CamFileError(DataError):
    """A CAM file is unreadable or malformed; the message names the file and the fix."""


@dataclass(frozen=True)
class CamRecord:
    """One image's CAMs: ``keys`` int64 [K'], ``cam`` float32 [K', h, w] (stride 4),
    ``high_res`` float32 [K', H, W]."""

    keys: np.ndarray
    cam: np.ndarray
    high_res: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the image the maps were made for."""
        return tuple(self.high_res.shape[1:])  # type: ignore[return-value]

    def as_dict(self) -> dict[str, np.ndarray]:
        """The record as the dict of arrays that ``ops.confident_labels`` takes."""
        return {"keys": self.keys, "cam": self.cam, "high_res": self.high_res}


def _as_array(value: Any) -> np.ndarray:
    """A NumPy array of an array, a (CPU or GPU) torch tensor or a list, without importing torch."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _problem(keys: np.ndarray, cam: np.ndarray, high_res: np.ndarray,
             num_classes: int | None) -> str | None:
    """What is inconsistent about the three arrays, or None."""
    if keys.ndim != 1 or not (np.issubdtype(keys.dtype, np.integer) or keys.size == 0):
        return f"'keys' must be integers [K'], got {keys.dtype} of shape {keys.shape}"
    for name, maps in (("cam", cam), ("high_res", high_res)):
        if maps.ndim != 3 or maps.shape[0] != keys.shape[0]:
            return (f"'{name}' has shape {maps.shape} for {keys.shape[0]} keys; it must be "
                    f"[{keys.shape[0]}, h, w]")
        if not (np.issubdtype(maps.dtype, np.floating) or maps.size == 0):
            return f"'{name}' must hold floats, got {maps.dtype}"
    h, w = high_res.shape[1:]
    if cam.shape[1:] != (-(-h // 4), -(-w // 4)):
        return (f"'cam' is {cam.shape[1:]} but 'high_res' is {(h, w)}: 'cam' must be at stride "
                f"4, i.e. {(-(-h // 4), -(-w // 4))}")
    if keys.size and (keys.min() < 0 or (num_classes is not None and keys.max() >= num_classes)):
        limit = "" if num_classes is None else f"..{num_classes - 1}"
        return f"'keys' {keys.tolist()} are outside 0{limit}"
    if np.unique(keys).size != keys.size:
        return f"'keys' {keys.tolist()} repeat a class"
    return None


def save_cam(path: str | Path, keys: Any, cam: Any, high_res: Any, fmt: str = "npy") -> None:
    """Write one image's CAMs atomically (arrays or tensors in; see the module doc for ``fmt``)."""
    if fmt not in FORMATS:
        raise ValueError(f"cam.format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    k = _as_array(keys).astype(np.int64, copy=False)
    c = np.ascontiguousarray(_as_array(cam), dtype=np.float32)
    hr = np.ascontiguousarray(_as_array(high_res), dtype=np.float32)
    problem = _problem(k, c, hr, None)
    if problem:
        raise ValueError(f"refusing to write CAM file {path}: {problem}")
    record: dict[str, Any] = {"keys": k, "cam": c, "high_res": hr}
    if fmt == "irn":
        import torch

        # compact CPU tensors, as the official make_cam.py saves valid_cat and strided_cam.cpu()
        record["keys"], record["cam"] = torch.tensor(k), torch.tensor(c)
    atomic_save_npy(path, record)


def load_cam(path: str | Path, num_classes: int | None = None) -> CamRecord:
    """Read a CAM file in either encoding; check it (keys within ``0..num_classes-1`` if given)."""
    path = Path(path)
    if not path.is_file():
        raise CamFileError(f"CAM file {path} does not exist; run `csdseg make-cam` first")
    try:
        loaded = np.load(path, allow_pickle=True)
    except Exception as exc:  # noqa: BLE001 - truncated, not .npy, unpicklable: same advice
        raise CamFileError(f"CAM file {path} is unreadable, truncated or not a .npy file "
                           f"({type(exc).__name__}: {exc}); {FIX}") from None
    if isinstance(loaded, np.ndarray) and loaded.dtype == object and loaded.shape == ():
        loaded = loaded.item()
    if not isinstance(loaded, dict):
        what = (f"an array {loaded.dtype} of shape {loaded.shape}"
                if isinstance(loaded, np.ndarray) else type(loaded).__name__)
        raise CamFileError(f"CAM file {path} holds {what}, not make-cam's dict of "
                           f"{', '.join(ENTRIES)}; {FIX}")
    missing = [name for name in ENTRIES if name not in loaded]
    if missing:
        raise CamFileError(f"CAM file {path} has no {', '.join(repr(m) for m in missing)} (it holds "
                           f"{', '.join(map(repr, loaded)) or 'nothing'}); a CAM file needs "
                           f"{', '.join(ENTRIES)} as csdseg's or IRN's make-cam writes them: {FIX}")
    try:
        keys, cam, high_res = (_as_array(loaded[name]) for name in ENTRIES)
    except Exception as exc:  # noqa: BLE001 - an entry that is no array at all
        raise CamFileError(f"CAM file {path}: an entry is not an array ({exc}); {FIX}") from None
    problem = _problem(keys, cam, high_res, num_classes)
    if problem:
        raise CamFileError(f"CAM file {path}: {problem}; {FIX}")
    return CamRecord(keys.astype(np.int64, copy=False), cam.astype(np.float32, copy=False),
                     high_res.astype(np.float32, copy=False))
