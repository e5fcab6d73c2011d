"""Training pairs for the segmentation network: an image and its pseudo-mask PNG.

Pseudo-masks are label PNGs (palette or L mode: 0 = background, 1..K classes, 255 = ignored),
one per training id, named ``<id>.png`` in one folder (by default the run's ``sem_seg/``).
Augmentation follows DeepLab's VOC recipe (csdseg.data.augment.ScaleCrop): a random scale in
[0.5, 1.5], a horizontal flip, and a random crop padded with the mean colour (0 once
normalised; image) and 255 (mask).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from csdseg.data.source import DataError, Source, read_mask
from csdseg.data.augment import ScaleCrop
from csdseg.data.transforms import sample_rng


def check_pseudo_masks(mask_dir: Path, ids: list[str], made_by: str = "make-sem-seg") -> None:
    """Refuse to train when any of ``ids`` has no ``<id>.png`` in ``mask_dir``."""
    missing = [i for i in ids if not (mask_dir / f"{i}.png").is_file()]
    if missing:
        raise DataError(f"{mask_dir / (missing[0] + '.png')} does not exist ({len(missing)} of "
                        f"{len(ids)} pseudo-masks missing); run `csdseg {made_by}` first or set "
                        "seg.pseudo_dir")


class SegTrainDataset(Dataset):
    """``dataset[(epoch, index)]`` -> {"img": float32 [3, S, S], "mask": int64 [S, S]}.

    The augmentation of a sample is a pure function of (seed, epoch, index). ``mask_dir=None``
    trains on the dataset's own ground-truth masks (the fully supervised ceiling).
    """

    def __init__(self, source: Source, ids: list[str], mask_dir: Path | None, crop_size: int,
                 scale_range: tuple[float, float] = (0.5, 1.5), hflip: bool = True,
                 seed: int = 0) -> None:
        if crop_size < 1:
            raise ValueError(f"crop_size must be >= 1, got {crop_size}")
        lo, hi = scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must be [lo, hi] with 0 < lo <= hi, got {scale_range}")
        self.source, self.ids = source, list(ids)
        self.mask_dir = Path(mask_dir) if mask_dir is not None else None
        self.seed = seed
        self.augment = ScaleCrop(crop_size, (lo, hi), hflip)

    def __len__(self) -> int:
        return len(self.ids)

    def load_pair(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """uint8 image [H, W, 3] and its pseudo-mask uint8 [H, W], sizes checked."""
        img = self.source.load_image(image_id)
        if self.mask_dir is None:
            return img, self.source.load_mask(image_id)  # sizes checked by the source
        mask_path = self.mask_dir / f"{image_id}.png"
        mask = read_mask(mask_path, self.source.num_classes)
        if mask.shape != img.shape[:2]:
            raise DataError(f"pseudo-mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its "
                            f"image {self.source.image_path(image_id)} is {img.shape[1]}x"
                            f"{img.shape[0]} (W x H); regenerate the pseudo-masks for this dataset")
        return img, mask

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        rng = sample_rng(self.seed, epoch, index)
        img, mask = self.load_pair(self.ids[index])
        x, (y,) = self.augment(img, rng, (mask,))
        return {"img": torch.from_numpy(x), "mask": torch.from_numpy(y.astype(np.int64))}
