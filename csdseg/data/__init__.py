"""Datasets: one :class:`~csdseg.data.source.Source` interface over VOC, COCO, custom folders.

``data.dataset`` names an entry of :data:`DATASETS`; a new dataset is one module with a
``Source`` subclass that has ``from_config(cfg: DataConfig, split)``, plus one entry here (the
config's allowed values are this dict's keys, checked when a config is loaded).
"""
from __future__ import annotations

import importlib
from typing import NamedTuple

from csdseg.config import DataConfig
from csdseg.data.source import DataError, Source


class Dataset(NamedTuple):
    module: str
    source: str  # the Source subclass in ``module``
    about: str


DATASETS: dict[str, Dataset] = {
    "voc": Dataset("csdseg.data.voc", "VOCSource",
                   "PASCAL VOC 2012 layout (+ SBD's train_aug); the synthetic data uses it too"),
    "coco": Dataset("csdseg.data.coco", "COCOSource",
                    "COCO 2014 with the label PNGs and labels `csdseg prepare coco` makes"),
    "msrc": Dataset("csdseg.data.msrc", "MSRCSource",
                    "MSRC-v2 photos, objects in context: 14 classes, context as background"),
    "custom": Dataset("csdseg.data.custom", "CustomSource",
                      "any folder: images/ and a CSV of image,labels (docs/datasets.md)"),
}


def build_source(cfg: DataConfig, split: str) -> Source:
    """The split ``split`` of the dataset described by ``cfg``."""
    if cfg.dataset not in DATASETS:  # configs are checked at load; this is for hand-made ones
        raise DataError(f"data.dataset must be one of {', '.join(DATASETS)}, got '{cfg.dataset}'")
    entry = DATASETS[cfg.dataset]
    source = getattr(importlib.import_module(entry.module), entry.source).from_config(cfg, split)
    if cfg.skip_bad_images:
        source.drop_unreadable_images()
    return source


__all__ = ["DATASETS", "DataError", "Dataset", "Source", "build_source"]
