"""A custom dataset: a folder of images plus a CSV of image-level labels.

::

    root/images/cat_01.jpg ...       images (CSV paths are relative to root/images, else root)
    root/train.csv                   header ``image,labels``; labels are ``;``-separated names
    root/classes.txt                 optional: one class name per line, fixing the order
    root/masks/cat_01.png            optional ground truth for evaluation (0 = bg, i = class i)

Ids are the image file stems. Without ``classes.txt`` the classes are the sorted union of the
names in every ``*.csv`` in root (plus the CSV read, if it lives elsewhere), so a train and a val
CSV always agree on the class order even when one of them lacks a class.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import csv as csv_module
from pathlib import Path

import numpy as np

from csdseg.data.source import DataError, Source

if TYPE_CHECKING:
    from csdseg.config import DataConfig

HEADER = ("image", "labels")


def resolve_csv(root: Path, csv: str) -> Path:
    """``csv`` as a path, else relative to root, else ``root/<csv>.csv``."""
    if not csv:
        raise DataError("custom datasets need a CSV: set data.csv=train.csv")
    candidates = [Path(csv), root / csv, root / f"{csv}.csv"]
    for path in candidates:
        if path.is_file():
            return path
    raise DataError(f"label CSV '{csv}' not found: looked for {candidates[1]} and {candidates[2]}")


def read_rows(path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line number, image path, class names)`` per data row of an ``image,labels`` CSV."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv_module.reader(handle))
    if not rows or tuple(c.strip().lower() for c in rows[0][:2]) != HEADER:
        raise DataError(f"{path} must start with the header row 'image,labels' "
                        f"(got {','.join(rows[0]) if rows else 'an empty file'!r})")
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        image = row[0].strip()
        names = [n.strip() for n in (row[1] if len(row) > 1 else "").split(";") if n.strip()]
        out.append((line, image, names))
    return out


def read_class_list(root: Path, csv_path: Path) -> list[str]:
    """``root/classes.txt`` if present, else the sorted union over the CSVs (see module doc)."""
    listed = root / "classes.txt"
    if listed.is_file():
        names = [n.strip() for n in listed.read_text(encoding="utf-8").splitlines() if n.strip()]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DataError(f"{listed} lists {duplicates[0]!r} more than once")
        if not names:
            raise DataError(f"{listed} is empty; list one class name per line")
        return names
    union: set[str] = set()
    for path in sorted({*root.glob("*.csv"), csv_path.resolve()}):
        try:
            union.update(n for _, _, names in read_rows(path) for n in names)
        except DataError:
            if path == csv_path.resolve():
                raise
            # other CSVs in root without the header are not label files: leave them out
    return sorted(union)


class CustomSource(Source):
    @classmethod
    def from_config(cls, cfg: "DataConfig", split: str) -> "CustomSource":
        """``split`` names the CSV unless ``data.csv`` does."""
        return cls(cfg.root, csv=cfg.csv or split, mask_dir=cfg.mask_dir)

    def __init__(self, root: str | Path, csv: str, mask_dir: str = "") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"dataset root {self.root} does not exist; set data.root=/path/to/folder")
        self.csv_path = resolve_csv(self.root, csv)
        self.class_names = read_class_list(self.root, self.csv_path)
        lookup = {name: n for n, name in enumerate(self.class_names)}
        image_base = self.root / "images"
        self.ids, self._paths, vectors = [], {}, []
        seen: dict[str, int] = {}
        for line, image, names in read_rows(self.csv_path):
            where = f"{self.csv_path}:{line}"
            if not names:
                raise DataError(f"{where}: image {image} has no labels; weak supervision needs at "
                                "least one class per image: drop the row or add its classes")
            unknown = [n for n in names if n not in lookup]
            if unknown:
                raise DataError(f"{where}: unknown class {unknown[0]!r}; allowed: "
                                f"{', '.join(self.class_names)} (from {self.root / 'classes.txt'})")
            candidates = [Path(image)] if Path(image).is_absolute() else [
                image_base / image, self.root / image]
            path = next((p for p in candidates if p.is_file()), None)
            if path is None:
                raise DataError(f"{where}: image file {image} not found (looked in "
                                f"{' and '.join(str(p.parent) for p in candidates)})")
            image_id = path.stem
            if image_id in seen:
                raise DataError(f"{where}: image id {image_id!r} already appears on line "
                                f"{seen[image_id]}; each image needs exactly one row")
            seen[image_id] = line
            vector = np.zeros(len(self.class_names), np.float32)
            vector[[lookup[n] for n in names]] = 1.0
            self.ids.append(image_id)
            self._paths[image_id] = path
            vectors.append(vector)
        if not self.ids:
            raise DataError(f"{self.csv_path} has a header but no image rows")
        self.labels = np.stack(vectors)
        self.mask_dir = Path(mask_dir) if mask_dir else self.root / "masks"

    def image_path(self, image_id: str) -> Path:
        return self._paths[image_id]

    def mask_path(self, image_id: str) -> Path | None:
        return self.mask_dir / f"{image_id}.png"

    def has_masks(self) -> bool:
        return self.mask_dir.is_dir()
