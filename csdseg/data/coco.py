"""MS COCO 2014 in the layout WSSS work uses (MCTformer, and the label PNGs most repos share).

::

    root/train2014/COCO_train2014_000000000009.jpg     images (root/images/train2014/ also works)
    root/val2014/COCO_val2014_000000000042.jpg
    root/SegmentationClass/train2014/<id>.png          0 = background, 1..80 classes, 255 = ignore
    root/SegmentationClass/val2014/<id>.png            (COCO_val2014_<id>.png names also found)
    root/cls_labels_coco.npy                           dict "000000000009" -> float32[80]
    root/ImageSets/<split>.txt                         optional split lists

Ids are the 12-digit image numbers ("000000000009"). Both 2014 folders hold disjoint images,
so an id alone says which folder it lives in. ``csdseg prepare coco`` derives the label PNGs,
the label file and the ``train_labelled`` / ``val_labelled`` lists from the instance JSONs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from csdseg.data.classes import COCO_CLASSES, IGNORE_INDEX
from csdseg.data.source import DataError, Source, read_split
from csdseg.data.voc import gather_labels, load_label_file

if TYPE_CHECKING:
    from csdseg.config import DataConfig

BUILTIN = resources.files("csdseg.data") / "resources" / "coco14"
# split name -> built-in list; the lists hold all 82,783 train and 40,504 val images.
BUILTIN_SPLITS = {"train": "train14", "val": "val14", "train14": "train14", "val14": "val14"}
LABEL_FILE = "cls_labels_coco.npy"
_ID = re.compile(r"^(?:COCO_[a-z]+\d{4}_)?(\d{1,12})$")


def decode_coco_id(key: object) -> str:
    """Normalise a label-file key or list entry to the 12-digit id.

    Accepts ints (9), bare ids ("000000000009"), MCTformer-style file stems
    ("COCO_train2014_000000000009") with or without ``.jpg``.
    """
    if isinstance(key, (int, np.integer)):
        return f"{int(key):012d}"
    text = Path(str(key).strip()).name
    for suffix in (".jpg", ".png"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    match = _ID.match(text)
    return f"{int(match.group(1)):012d}" if match else text


@lru_cache(maxsize=1)
def val2014_ids() -> frozenset[str]:
    return frozenset(read_split(Path(str(BUILTIN / "val14.txt"))))


def folder_of(image_id: str) -> str:
    """``train2014`` or ``val2014``: the image folder that holds ``image_id``."""
    return "val2014" if image_id in val2014_ids() else "train2014"


def resolve_coco_split(root: Path, split: str) -> Path:
    """A ``.txt`` path, else ``root/ImageSets/<split>.txt``, else a built-in list."""
    candidates = [Path(split), root / "ImageSets" / f"{split}.txt"]
    if split in BUILTIN_SPLITS:
        candidates.append(Path(str(BUILTIN / f"{BUILTIN_SPLITS[split]}.txt")))
    for path in candidates:
        if path.suffix == ".txt" and path.is_file():
            return path
    raise DataError(
        f"COCO split '{split}' not found: looked for {candidates[1]} and the built-in lists "
        f"({', '.join(sorted(BUILTIN_SPLITS))}); `csdseg prepare coco` writes train_labelled/val_labelled"
    )


def mask_names(image_id: str) -> list[str]:
    """File names a COCO label PNG goes by: ``<id>.png``, then ``COCO_<folder>_<id>.png``."""
    return [f"{image_id}.png", f"COCO_{folder_of(image_id)}_{image_id}.png"]


class COCOSource(Source):
    @classmethod
    def from_config(cls, cfg: "DataConfig", split: str) -> "COCOSource":
        return cls(cfg.root, split, label_file=cfg.label_file, mask_dir=cfg.mask_dir)

    def __init__(self, root: str | Path, split: str, label_file: str = "", mask_dir: str = "") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"dataset root {self.root} does not exist; set data.root=/path/to/coco2014")
        image_bases = [self.root, self.root / "images"]
        self.image_base = next((b for b in image_bases if (b / "train2014").is_dir()
                                or (b / "val2014").is_dir()), None)
        if self.image_base is None:
            raise DataError(
                f"{self.root} is not in the COCO 2014 layout: neither train2014/ nor val2014/ "
                "(nor images/train2014/) exists"
            )
        self.class_names = list(COCO_CLASSES)
        self.split = split
        self.ids = [decode_coco_id(i) for i in read_split(resolve_coco_split(self.root, split))]
        self.label_path = Path(label_file) if label_file else self.root / LABEL_FILE
        if not self.label_path.is_file():
            raise DataError(
                f"label file {self.label_path} does not exist; run `csdseg prepare coco --root "
                f"{self.root} --annotations instances_train2014.json` to derive it"
            )
        table = load_label_file(self.label_path, self.num_classes, decode=decode_coco_id)
        try:
            self.labels = gather_labels(self.ids, table, self.label_path)
        except DataError as exc:
            # ~1% of COCO images have no annotation at all: point at the filtered lists.
            raise DataError(f"{exc} (for COCO use split train_labelled / val_labelled, "
                            "written by `csdseg prepare coco`)") from None
        self.mask_dir = Path(mask_dir) if mask_dir else None

    def image_path(self, image_id: str) -> Path:
        folder = folder_of(image_id)
        return self.image_base / folder / f"COCO_{folder}_{image_id}.jpg"

    def _mask_folder(self, image_id: str) -> Path:
        if self.mask_dir is not None:
            return self.mask_dir
        return self.root / "SegmentationClass" / folder_of(image_id)

    def mask_path(self, image_id: str) -> Path | None:
        folder = self._mask_folder(image_id)
        names = mask_names(image_id)
        for name in names:
            if (folder / name).is_file():
                return folder / name
        return folder / names[0]

    def has_masks(self) -> bool:
        return any(self._mask_folder(i).is_dir() for i in self.ids[:1])


# --- deriving labels from instance annotations ------------------------------------------------


def category_index(categories: list[dict]) -> dict[int, int]:
    """COCO category id (1..90, with gaps) -> class index 0..79, matched by name."""
    lookup = {name: n for n, name in enumerate(COCO_CLASSES)}
    mapping = {}
    for cat in categories:
        if cat["name"] not in lookup:
            raise DataError(f"annotation category '{cat['name']}' (id {cat['id']}) is not one of the "
                            "80 COCO classes; is this an instances_*.json file?")
        mapping[int(cat["id"])] = lookup[cat["name"]]
    return mapping


def decode_segmentation(segmentation: object, height: int, width: int) -> np.ndarray:
    """Polygons, uncompressed or compressed RLE -> binary uint8 [H, W] (pycocotools' rules)."""
    from pycocotools import mask as mask_utils

    if not segmentation:
        return np.zeros((height, width), np.uint8)
    if isinstance(segmentation, list):  # polygons: one object may have several parts
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE (crowd regions)
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(np.uint8)


def render_label_mask(anns: list[tuple[object, bool, int]], height: int, width: int) -> np.ndarray:
    """Instances -> semantic label map uint8 [H, W].

    ``anns`` holds ``(segmentation, iscrowd, class_index 0..79)``. Crowd regions become 255
    (ignore); then non-crowd instances are painted largest first, so where objects overlap the
    smaller one stays visible and a labelled instance inside a crowd region keeps its class.
    """
    label = np.zeros((height, width), np.uint8)
    instances = []
    for order, (segmentation, iscrowd, index) in enumerate(anns):
        binary = decode_segmentation(segmentation, height, width).astype(bool)
        if iscrowd:
            label[binary] = IGNORE_INDEX
        else:
            instances.append((-int(binary.sum()), order, binary, index))
    for _, _, binary, index in sorted(instances, key=lambda t: (t[0], t[1])):
        label[binary] = index + 1
    return label
