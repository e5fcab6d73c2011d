"""Datasets the CAM stages read: augmented crops for training, multi-scale views for make-cam."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from csdseg.data.augment import Augment
from csdseg.data.source import DataError, Source, check_image
from csdseg.data.transforms import normalize, rescale, sample_rng


class ClassificationDataset(Dataset):
    """CAM training input: each image through one augmentation recipe (csdseg.data.augment).

    Indexed by ``(epoch, index)`` keys (see csdseg.engine.loop) so that a sample's augmentation
    is reproducible. Returns ``img`` [3, crop, crop], ``label`` [K], ``index``. CSD's dataset
    wraps this one and reuses its ``augment`` object, so X_m is this dataset's sample.
    """

    def __init__(self, source: Source, augment: Augment, seed: int = 0) -> None:
        self.source, self.augment, self.seed = source, augment, seed

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        rng = sample_rng(self.seed, epoch, index)
        image_id = self.source.ids[index]
        x, _ = self.augment(self.source.load_image(image_id), rng)
        return {"img": torch.from_numpy(x), "label": torch.from_numpy(self.source.labels[index]),
                "index": torch.tensor(index)}


class MultiScaleDataset(Dataset):
    """make-cam input: for each scale a [V, 3, h, w] tensor, V = 2 with the flipped view."""

    def __init__(self, source: Source, ids: list[str], scales: list[float], flip: bool = True) -> None:
        self.source, self.ids, self.scales, self.flip = source, ids, scales, flip

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        image_id = self.ids[i]
        img = self.source.load_image(image_id)
        views = []
        for scale in self.scales:
            x = normalize(rescale(img, scale))
            stack = np.stack([x, x[:, :, ::-1]]) if self.flip else x[None]
            views.append(torch.from_numpy(np.ascontiguousarray(stack)))
        return {"id": image_id, "size": img.shape[:2], "views": views,
                "label": torch.from_numpy(self.source.label(image_id))}


def check_cam_inputs(source: Source, ids: list[str], scales: list[float], cell: int,
                     max_pixels: int, model_name: str) -> None:
    """Before any make-cam work: every image of ``ids`` reads (:func:`check_image`), has at most
    ``max_pixels`` pixels (0 = no limit; memory grows with them), and at the smallest of
    ``scales`` still covers one ``cell`` (the network's stride or patch) on its short side."""
    smallest = min(scales)
    for image_id in ids:
        path = source.image_path(image_id)
        height, width, _ = check_image(path)
        if max_pixels and height * width > max_pixels:
            raise DataError(
                f"image {path} is {width}x{height} ({height * width / 1e6:.1f} megapixels), more "
                f"than cam.max_pixels={max_pixels}: make-cam's multi-scale maps take about 2 GiB "
                "per megapixel (IRN's ResNet-50, 4 scales, CPU); downscale the dataset's images "
                "(and their masks, nearest-neighbour), or raise cam.max_pixels")
        short = min(max(1, round(side * smallest)) for side in (height, width))
        if short < cell:
            raise DataError(
                f"image {path} is {width}x{height}, too small for make-cam: at the smallest of "
                f"cam.scales ({smallest:g}) its short side is {short} px, less than one {cell} px "
                f"cell of {model_name}; use cam.scales of at least "
                f"{cell / min(height, width):.2g}, or leave the image out")


def first_item(batch: list):
    """Collate for batch size 1 with ragged contents: just unwrap."""
    return batch[0]
