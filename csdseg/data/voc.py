"""PASCAL VOC 2012 (+ SBD) in the standard ``VOCdevkit/VOC2012`` layout.

The synthetic dataset is written in this layout too, so it goes through exactly this code.
Split lists are looked up in ``root/ImageSets/Segmentation/<split>.txt`` first, then among the
standard lists shipped in the package (train_aug 10,582, train 1,464, val 1,449, test 1,456).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

from csdseg.data.classes import VOC_CLASSES
from csdseg.data.source import DataError, Source, load_contexts, read_split

if TYPE_CHECKING:
    from csdseg.config import DataConfig

BUILTIN = resources.files("csdseg.data") / "resources" / "voc12"


def decode_voc_id(key: object) -> str:
    """IRN's label file uses int keys (2007000032); ids are strings ("2007_000032") here."""
    if isinstance(key, (int, np.integer)):
        text = str(int(key))
        return f"{text[:4]}_{text[4:]}"
    return str(key)


def load_label_file(path: Path, num_classes: int,
                    decode: Callable[[object], str] = decode_voc_id) -> dict[str, np.ndarray]:
    """A ``.npy`` dict id -> multi-hot float32[K]; ``decode`` maps each key to a string id."""
    if not path.is_file():
        raise DataError(f"label file {path} does not exist; run `csdseg prepare voc` to derive it")
    try:
        raw = np.load(path, allow_pickle=True).item()
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise DataError(f"label file {path} is not a .npy dict of id -> labels ({exc})") from None
    labels = {}
    for key, value in raw.items():
        vector = np.asarray(value, dtype=np.float32).reshape(-1)
        if vector.shape[0] != num_classes:
            raise DataError(
                f"label file {path}: id {decode(key)} has {vector.shape[0]} labels, "
                f"expected {num_classes}"
            )
        labels[decode(key)] = vector
    return labels


def resolve_split(root: Path, split: str, builtin: Path | None) -> Path:
    candidates = [Path(split), root / "ImageSets" / "Segmentation" / f"{split}.txt"]
    if builtin is not None:
        candidates.append(Path(str(builtin / f"{split}.txt")))
    for path in candidates:
        if path.suffix == ".txt" and path.is_file():
            return path
    raise DataError(
        f"split '{split}' not found: looked for {candidates[1]}"
        + (f" and the built-in lists ({', '.join(p.stem for p in _builtin_lists(builtin))})" if builtin else "")
    )


def _builtin_lists(builtin: Path | None) -> list[Path]:
    return sorted(Path(str(builtin)).glob("*.txt")) if builtin else []


def gather_labels(ids: list[str], table: dict[str, np.ndarray], label_path: Path) -> np.ndarray:
    missing = [i for i in ids if i not in table]
    if missing:
        raise DataError(
            f"label file {label_path} has no labels for {len(missing)} image(s), e.g. {missing[0]}; "
            "derive labels with `csdseg prepare` or fix the split list"
        )
    labels = np.stack([table[i] for i in ids]) if ids else np.zeros((0, 0), np.float32)
    empty = [i for i, v in zip(ids, labels) if v.sum() == 0]
    if empty:
        raise DataError(
            f"label file {label_path}: {len(empty)} image(s) have no positive label, e.g. {empty[0]}; "
            "weak supervision needs at least one class per training image: drop them from the split"
        )
    return labels


class VOCSource(Source):
    @classmethod
    def from_config(cls, cfg: "DataConfig", split: str) -> "VOCSource":
        return cls(cfg.root, split, label_file=cfg.label_file, mask_dir=cfg.mask_dir)

    def __init__(self, root: str | Path, split: str, label_file: str = "", mask_dir: str = "",
                 class_names: list[str] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"dataset root {self.root} does not exist; set data.root=/path/to/VOC2012")
        if not (self.root / "JPEGImages").is_dir():
            raise DataError(
                f"{self.root} is not in the VOC layout: JPEGImages/ is missing "
                "(expected VOCdevkit/VOC2012 with JPEGImages, SegmentationClass, ...)"
            )
        self.class_names = list(class_names or VOC_CLASSES)
        builtin = BUILTIN if self.class_names == VOC_CLASSES else None
        self.split = split
        self.ids = read_split(resolve_split(self.root, split, builtin))
        if label_file:
            label_path = Path(label_file)
        elif (self.root / "cls_labels.npy").is_file():
            label_path = self.root / "cls_labels.npy"
        else:
            label_path = Path(str(BUILTIN / "cls_labels.npy"))
        self.label_path = label_path
        has_labels = split != "test"
        table = load_label_file(label_path, self.num_classes) if has_labels else {}
        self.labels = (gather_labels(self.ids, table, label_path) if has_labels
                       else np.zeros((len(self.ids), self.num_classes), np.float32))
        self.check_images_exist()  # before any training, not as a crash at step 1000
        self.mask_dirs = [Path(mask_dir)] if mask_dir else [
            self.root / "SegmentationClass", self.root / "SegmentationClassAug"]
        self._contexts = load_contexts(self.root)

    def image_path(self, image_id: str) -> Path:
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def mask_path(self, image_id: str) -> Path | None:
        for folder in self.mask_dirs:
            path = folder / f"{image_id}.png"
            if path.is_file():
                return path
        return self.mask_dirs[0] / f"{image_id}.png"

    def has_masks(self) -> bool:
        return any(d.is_dir() for d in self.mask_dirs)

    def contexts(self) -> dict | None:
        return self._contexts
