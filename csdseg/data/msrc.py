"""MSRC-v2 (591 photos, 23-class masks) under csdseg's "objects in context" protocol.

::

    root/Images/<id>.png                 the photos (the original distribution's <id>.bmp too)
    root/SegmentationClass/<id>.png      uint8 labels 0..22 in MSRC_CLASSES order, 255 = void

The protocol (docs/datasets.md): the 14 object classes of :data:`OBJECT_CLASSES` are the
classes; face and body are one class, person; the seven context classes of
:data:`CONTEXT_CLASSES` (grass, sky, water, road, ...) are background; horse (3 images) is void;
images without an object class are left out (494 of 591 remain). Image-level labels are the
object classes present in each mask. The split is fixed: ``resources/msrc/{train,val}.txt``
(ids only), made by :func:`stratified_split` with seed 0.

The 23-class masks stay reachable: :meth:`MSRCSource.load_scene` gives each pixel's context
class, which the context-confusion metric reads (csdseg/evaluation/context.py).
"""
from __future__ import annotations

from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from csdseg.data.classes import IGNORE_INDEX
from csdseg.data.source import DataError, Source, read_index_png, read_split

if TYPE_CHECKING:
    from csdseg.config import DataConfig

BUILTIN = resources.files("csdseg.data") / "resources" / "msrc"

# the 23 classes of the masks, in their index order (the dataset's own)
MSRC_CLASSES = ["building", "grass", "tree", "cow", "horse", "sheep", "sky", "mountain",
                "aeroplane", "water", "face", "car", "bicycle", "flower", "sign", "bird", "book",
                "chair", "road", "cat", "dog", "body", "boat"]
OBJECT_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "book", "car", "cat", "chair", "cow",
                  "dog", "flower", "person", "sheep", "sign"]
CONTEXT_CLASSES = ["building", "grass", "tree", "sky", "mountain", "water", "road"]
MERGED = {"face": "person", "body": "person"}
VOID = ("horse",)
MIN_PAIR_IMAGES = 5  # a (class, context) pair is scored when this many train images hold it


def _tables() -> tuple[np.ndarray, np.ndarray]:
    """Lookups [256] from a raw label to the protocol's label (0 bg, 1..14, 255) and to the
    context index (0..6, else 255)."""
    to_class = np.full(256, IGNORE_INDEX, np.uint8)
    to_scene = np.full(256, IGNORE_INDEX, np.uint8)
    for raw, name in enumerate(MSRC_CLASSES):
        name = MERGED.get(name, name)
        if name in CONTEXT_CLASSES:
            to_class[raw] = 0
            to_scene[raw] = CONTEXT_CLASSES.index(name)
        elif name in OBJECT_CLASSES:
            to_class[raw] = OBJECT_CLASSES.index(name) + 1
    return to_class, to_scene


TO_CLASS, TO_SCENE = _tables()


def object_classes(raw: np.ndarray) -> list[int]:
    """The protocol's class indices 0..13 present in a raw 23-class mask."""
    mapped = np.unique(TO_CLASS[raw])
    return [int(v) - 1 for v in mapped if 0 < v < IGNORE_INDEX]


def stratified_split(classes: dict[str, list[int]], val_share: float = 0.3,
                     seed: int = 0) -> tuple[list[str], list[str]]:
    """(train ids, val ids): each image goes with its rarest class; within each such group
    ``round(val_share * n)`` images (at least 1 when n >= 2) go to val, drawn with ``seed``."""
    count = np.bincount([c for cs in classes.values() for c in cs], minlength=len(OBJECT_CLASSES))
    groups: dict[int, list[str]] = {}
    for image_id in sorted(classes):
        rarest = min(classes[image_id], key=lambda c: (count[c], c))
        groups.setdefault(rarest, []).append(image_id)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in sorted(groups):
        ids = list(rng.permutation(groups[c]))
        n_val = max(1, round(val_share * len(ids))) if len(ids) >= 2 else 0
        val += ids[:n_val]
        train += ids[n_val:]
    return sorted(train), sorted(val)


class MSRCSource(Source):
    @classmethod
    def from_config(cls, cfg: "DataConfig", split: str) -> "MSRCSource":
        return cls(cfg.root, split, mask_dir=cfg.mask_dir)

    def __init__(self, root: str | Path, split: str, mask_dir: str = "") -> None:
        self.root = Path(root)
        if not (self.root / "Images").is_dir():
            raise DataError(f"{self.root} is not an MSRC-v2 folder: Images/ is missing (expected "
                            "Images/<id>.png or .bmp and SegmentationClass/<id>.png); set "
                            "data.root=/path/to/msrc_v2")
        self.mask_dir = Path(mask_dir) if mask_dir else self.root / "SegmentationClass"
        if not self.mask_dir.is_dir():
            raise DataError(f"{self.mask_dir} is missing: MSRC's image-level labels come from its "
                            "masks; set data.mask_dir or restore SegmentationClass/")
        self.split = split
        self.class_names = list(OBJECT_CLASSES)
        self.ids = read_split(_split_path(self.root, split))
        self.check_images_exist()
        vectors = []
        for image_id in self.ids:
            present = object_classes(self._raw(image_id))
            if not present:
                raise DataError(f"{self.mask_path(image_id)} holds no object class; the protocol "
                                f"leaves such images out: drop {image_id} from the split list")
            vector = np.zeros(len(OBJECT_CLASSES), np.float32)
            vector[present] = 1.0
            vectors.append(vector)
        self.labels = np.stack(vectors)

    def image_path(self, image_id: str) -> Path:
        png = self.root / "Images" / f"{image_id}.png"
        if png.is_file():
            return png
        bmp = png.with_suffix(".bmp")
        return bmp if bmp.is_file() else png

    def mask_path(self, image_id: str) -> Path | None:
        return self.mask_dir / f"{image_id}.png"

    def has_masks(self) -> bool:
        return True

    def _raw(self, image_id: str) -> np.ndarray:
        # evaluation asks for the mask and then the scene of the same photo: read it once
        if getattr(self, "_last", (None,))[0] == image_id:
            return self._last[1]
        self._last = (image_id, self._read_raw(image_id))
        return self._last[1]

    def _read_raw(self, image_id: str) -> np.ndarray:
        path = self.mask_path(image_id)
        if not path.is_file():
            raise DataError(f"mask {path} does not exist; MSRC needs every mask of its split")
        raw = read_index_png(path, "mask")
        bad = (raw >= len(MSRC_CLASSES)) & (raw != IGNORE_INDEX)
        if bad.any():
            raise DataError(f"mask {path} holds values {sorted(np.unique(raw[bad]).tolist())[:5]} "
                            f"outside 0..{len(MSRC_CLASSES) - 1} and 255")
        return raw

    def load_mask(self, image_id: str) -> np.ndarray:
        """The protocol's mask: 0 background (context), 1..14 objects, 255 void and horse."""
        return TO_CLASS[self._raw(image_id)]

    def load_scene(self, image_id: str) -> np.ndarray:
        """Each pixel's context class (index into :data:`CONTEXT_CLASSES`), 255 elsewhere."""
        return TO_SCENE[self._raw(image_id)]

    def scene_classes(self) -> list[str]:
        return list(CONTEXT_CLASSES)

    @cached_property
    def scene_pairs(self) -> list[tuple[int, int]]:
        """(class 0..13, context 0..6) pairs held by >= MIN_PAIR_IMAGES images of the *train*
        split: the pairs the context-confusion metric scores, the same on every split."""
        train = self if self.split == "train" else MSRCSource(self.root, "train", str(self.mask_dir))
        held = np.zeros((len(OBJECT_CLASSES), len(CONTEXT_CLASSES)), np.int64)
        for image_id, vector in zip(train.ids, train.labels):
            scene = np.unique(train.load_scene(image_id))
            scene = scene[scene != IGNORE_INDEX]
            for c in np.flatnonzero(vector):
                held[c, scene] += 1
        return [(int(c), int(s)) for c, s in zip(*np.nonzero(held >= MIN_PAIR_IMAGES))]


def _split_path(root: Path, split: str) -> Path:
    """``split`` as a file, ``root/ImageSets/<split>.txt``, or the built-in list."""
    for path in (Path(split), root / "ImageSets" / f"{split}.txt",
                 Path(str(BUILTIN / f"{split}.txt"))):
        if path.suffix == ".txt" and path.is_file():
            return path
    raise DataError(f"MSRC split '{split}' not found: the built-in splits are train and val "
                    f"(or put a list at {root / 'ImageSets' / (split + '.txt')})")
