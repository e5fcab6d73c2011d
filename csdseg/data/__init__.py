"""Datasets: one :class:`~csdseg.data.source.Source` interface over VOC, COCO, custom folders."""
from __future__ import annotations

from csdseg.config import DataConfig
from csdseg.data.source import DataError, Source


def build_source(cfg: DataConfig, split: str) -> Source:
    """The split ``split`` of the dataset described by ``cfg``."""
    source = _build_source(cfg, split)
    if cfg.skip_bad_images:
        source.drop_unreadable_images()
    return source


def _build_source(cfg: DataConfig, split: str) -> Source:
    if cfg.dataset == "voc":
        from csdseg.data.voc import VOCSource

        return VOCSource(cfg.root, split, label_file=cfg.label_file, mask_dir=cfg.mask_dir)
    if cfg.dataset == "coco":
        from csdseg.data.coco import COCOSource

        return COCOSource(cfg.root, split, label_file=cfg.label_file, mask_dir=cfg.mask_dir)
    if cfg.dataset == "custom":
        from csdseg.data.custom import CustomSource

        return CustomSource(cfg.root, csv=cfg.csv or split, mask_dir=cfg.mask_dir)
    raise DataError(f"data.dataset must be voc, coco or custom, got '{cfg.dataset}'")


__all__ = ["DataError", "Source", "build_source"]
