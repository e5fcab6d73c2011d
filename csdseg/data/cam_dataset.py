"""Datasets the CAM stages read: augmented crops for training, multi-scale views for make-cam."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from csdseg.data.source import Source
from csdseg.data.transforms import (normalize, random_crop, random_hflip, random_resize_long,
                                    random_resized_crop, rescale, sample_rng)


class ClassificationDataset(Dataset):
    """CAM training input. ``irn``: resize-long, flip, normalise, random crop (pad with 0);
    ``mct``: DeiT's random-resized crop and flip (MCTformer without RandAugment/erasing).

    Indexed by ``(epoch, index)`` keys (see csdseg.engine.loop) so that a sample's augmentation
    is reproducible. Returns ``img`` [3, crop, crop], ``label`` [K], ``index``.
    """

    def __init__(self, source: Source, crop_size: int, resize_long: tuple[int, int],
                 hflip: bool = True, seed: int = 0, augment: str = "irn") -> None:
        if augment not in ("irn", "mct"):
            raise ValueError(f"train.augment must be irn or mct, got '{augment}'")
        self.source, self.crop_size, self.resize_long = source, crop_size, tuple(resize_long)
        self.hflip, self.seed, self.augment_name = hflip, seed, augment

    def __len__(self) -> int:
        return len(self.source)

    def augment(self, img: np.ndarray, rng: np.random.Generator,
                masks: tuple[np.ndarray, ...] = ()) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """The geometric pipeline applied to an image and any masks that go with it."""
        if self.augment_name == "mct":  # DeiT's random-resized crop, then flip
            img, masks = random_resized_crop(img, self.crop_size, rng, masks)
            if self.hflip:
                img, masks = random_hflip(img, rng, masks)
            return normalize(img), tuple(np.ascontiguousarray(m) for m in masks)
        img, masks = random_resize_long(img, *self.resize_long, rng, masks)
        if self.hflip:
            img, masks = random_hflip(img, rng, masks)
        x = normalize(img)
        cropped = random_crop([x, *masks], self.crop_size, [0.0] + [255] * len(masks), rng)
        return cropped[0], tuple(cropped[1:])

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


def first_item(batch: list):
    """Collate for batch size 1 with ragged contents: just unwrap."""
    return batch[0]
