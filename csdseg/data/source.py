"""One interface over every dataset: ids, image-level labels, images and (optional) masks.

A :class:`Source` is a split of a dataset. VOC (and the synthetic data, written in the VOC
layout), COCO and custom folders all implement it, so every stage reads data the same way.
Image ids are strings everywhere ("2007_000032").
"""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from csdseg.data.classes import IGNORE_INDEX
from csdseg.errors import DataError  # defined in the leaf, which imports nothing back

log = logging.getLogger("csdseg.data")


# what a dataset image's error message advises; ``csdseg predict`` passes its own
DATASET_FIX = "replace or remove it, or set data.skip_bad_images=true to leave it out"
EXIF_ORIENTATION = 0x0112  # the EXIF tag; csdseg ignores it (docs/datasets.md, "Image files")


class ImageInfo(NamedTuple):
    height: int
    width: int
    orientation: int  # EXIF orientation, 1 (or absent) = as stored; never applied


def read_image(path: Path, fix: str = DATASET_FIX) -> np.ndarray:
    """Read any image PIL understands as RGB uint8 [H, W, 3], on its stored pixel grid.

    Grayscale (L, 1), CMYK, YCbCr and palette images are converted; images with transparency
    (RGBA, LA, PA, a palette's transparent index) are composited on white; 16-bit grayscale
    (PNG ``I;16``) keeps its high byte, as PIL does for 16-bit colour PNGs. 32-bit integer or
    float images (``I``, ``F``: TIFF, depth maps) have no agreed 8-bit scaling: refused. An EXIF
    orientation tag is ignored: masks are drawn on the stored grid (VOC, COCO, MSRC). Empty,
    non-image, truncated and over-large files are refused; ``fix`` ends those messages.
    """
    with _opened(path, fix) as image:
        image.load()
        return _as_rgb(image, path)


def check_image(path: Path, fix: str = DATASET_FIX) -> ImageInfo:
    """Refuse, as :func:`read_image` would, without the cost of a full read: the whole file is
    decoded (which finds truncation) but a JPEG at 1/8 scale (~0.5 ms for a VOC image)."""
    with _opened(path, fix) as image:
        width, height = image.size
        orientation = int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
        if image.format == "JPEG":
            image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
        image.load()
        _as_rgb(image, path)
    return ImageInfo(height, width, orientation)


@contextmanager
def _opened(path: Path, fix: str) -> Iterator[Image.Image]:
    """``Image.open`` whose failures are one-line DataErrors naming the file."""
    if not path.is_file():
        raise DataError(f"image {path} does not exist; check data.root and the split list")
    if path.stat().st_size == 0:
        raise DataError(f"image {path} is an empty file (0 bytes); {fix}")
    try:
        with Image.open(path) as image:
            yield image
    except UnidentifiedImageError:
        with path.open("rb") as handle:
            head = handle.read(16)
        raise DataError(f"image {path} is not an image file (no format PIL reads starts with "
                        f"{head!r}); {fix}") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"image {path} is too large to decode ({exc}); downscale it") from None
    except (OSError, SyntaxError) as exc:
        raise DataError(f"image {path} is corrupt or truncated ({exc}); {fix}") from None


def _as_rgb(image: Image.Image, path: Path) -> np.ndarray:
    mode = image.mode
    if mode.startswith("I;16") or (mode == "I" and image.format == "PNG"):
        # 16-bit grayscale (older Pillow opens it as I): 0..65535 -> 0..255, the high byte
        gray = (np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("I", "F"):
        kind = "32-bit integer" if mode == "I" else "32-bit float"
        raise DataError(f"image {path} has {kind} pixels (mode {mode}), which have no standard "
                        "8-bit colour; convert it to an 8-bit RGB or grayscale image "
                        "(JPEG or PNG)")
    if mode == "P" and "transparency" in image.info or mode in ("LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":  # composite on white rather than dropping alpha to black
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        image = background
    return np.asarray(image.convert("RGB"))


def read_index_png(path: Path, what: str = "mask") -> np.ndarray:
    """A palette or L-mode PNG of class indices -> its [H, W] array (``what`` names it in errors)."""
    try:
        with Image.open(path) as image:
            labels = np.asarray(image)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{what} {path} is corrupt or not a PNG ({exc})") from None
    if labels.ndim != 2:
        raise DataError(f"{what} {path} must be a single-channel (palette or L) PNG, got shape {labels.shape}")
    return labels


def read_mask(path: Path, num_classes: int) -> np.ndarray:
    """Read a label PNG as uint8 [H, W]: 0 = background, 1..K classes, 255 = void."""
    if not path.is_file():
        raise DataError(f"mask {path} does not exist; check data.mask_dir")
    mask = read_index_png(path, "mask")
    bad = (mask > num_classes) & (mask != IGNORE_INDEX)
    if bad.any():
        raise DataError(
            f"mask {path} has values {sorted(set(np.unique(mask[bad]).tolist()))[:5]} outside "
            f"0..{num_classes} and {IGNORE_INDEX}; masks hold class indices, not colours"
        )
    return mask.astype(np.uint8)


def read_split(path: Path) -> list[str]:
    """A split list: one id per line (VOC lists may carry a mask path after the id)."""
    if not path.is_file():
        raise DataError(f"split list {path} does not exist")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    ids = [Path(i).stem if "/" in i else i for i in ids]
    if not ids:
        raise DataError(f"split list {path} is empty")
    return ids


class Source:
    """Base class: subclasses fill the attributes below in their constructor."""

    ids: list[str]
    labels: np.ndarray  # [N, K] float32 multi-hot
    class_names: list[str]

    def image_path(self, image_id: str) -> Path:
        raise NotImplementedError

    def mask_path(self, image_id: str) -> Path | None:
        return None

    # --- shared behaviour ------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, image_id: str) -> int:
        if not hasattr(self, "_index"):
            self._index = {i: n for n, i in enumerate(self.ids)}
        return self._index[image_id]

    def label(self, image_id: str) -> np.ndarray:
        return self.labels[self.index(image_id)]

    def load_image(self, image_id: str) -> np.ndarray:
        return read_image(self.image_path(image_id))

    def has_masks(self) -> bool:
        path = self.mask_path(self.ids[0]) if self.ids else None
        return path is not None and path.parent.is_dir()

    def load_mask(self, image_id: str) -> np.ndarray:
        path = self.mask_path(image_id)
        if path is None:
            raise DataError(f"this dataset has no masks for {image_id}")
        mask = read_mask(path, self.num_classes)
        image_path = self.image_path(image_id)
        if image_path.is_file():  # PIL reads only the header here: a cheap size check
            with Image.open(image_path) as image:
                width, height = image.size
            if mask.shape != (height, width):
                raise DataError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]} but its image "
                                f"{image_path} is {width}x{height}; masks must match their image")
        return mask

    def check_images_exist(self) -> None:
        """Fail before any work when the split names images that are not on disk (stat only)."""
        missing = [i for i in self.ids if not self.image_path(i).is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} of {len(self.ids)} image(s) of this split are missing, e.g. "
                f"{self.image_path(missing[0])}; check data.root or remove them from the split list"
            )

    def drop_unreadable_images(self) -> list[str]:
        """Decode every image once (:func:`check_image`) and leave out those that fail
        (``data.skip_bad_images``).

        Returns the skipped ids (also logged); ``self.skipped`` keeps them for the stage.
        """
        bad = []
        for image_id in self.ids:
            try:
                check_image(self.image_path(image_id))
            except DataError:
                bad.append(image_id)
        if bad:
            drop = set(bad)
            keep = [n for n, i in enumerate(self.ids) if i not in drop]
            self.ids = [self.ids[n] for n in keep]
            self.labels = self.labels[keep]
            if hasattr(self, "_index"):
                del self._index
            log.warning("data.skip_bad_images: left out %d unreadable image(s): %s",
                        len(bad), " ".join(bad))
        self.skipped = bad
        return bad

    def contexts(self) -> dict | None:
        """Per-image background context, recorded by the synthetic generator (else None)."""
        return None


def load_contexts(root: Path) -> dict | None:
    """``contexts.json`` written by ``csdseg synth``: context names, class->preferred, id->context."""
    path = root / "contexts.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())
