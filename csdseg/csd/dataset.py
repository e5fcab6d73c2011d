"""CSD's training samples: X_m plus, for samples that get views, X_s and the two pasted images.

Each item is a pure function of (seed, epoch, index): X_m goes through the baseline dataset's
own recipe object with the baseline's generator (so it is the baseline's sample, bit for bit,
for either recipe), and the draw of X_s and X_s's augmentation -- the same recipe -- use a
second generator seeded from the same triple.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from csdseg.csd.context_pairing import ContextSampler
from csdseg.csd.cooccurrence import CooccurrenceSampler
from csdseg.csd.paste import bg_paste_mask, masks_from_labels, paste, random_placement
from csdseg.data.cam_dataset import ClassificationDataset
from csdseg.data.source import DataError
from csdseg.data.transforms import sample_rng
from csdseg.files.labels import read_label_png

CSD_STREAM = 0xC5D  # extra seed word: the CSD draws never reuse the augmentation stream


class MaskStore:
    """Confident label PNGs (0 bg, 1..K class, 255 uncertain) in one folder, by image id."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, image_id: str) -> Path:
        return self.folder / f"{image_id}.png"

    def missing(self, ids: list[str]) -> list[str]:
        return [i for i in ids if not self.path(i).is_file()]

    def load(self, image_id: str) -> np.ndarray:
        """uint8 [H, W]."""
        return read_label_png(self.path(image_id), made_by="make-csd-masks", what="CSD mask")


class CSDDataset(Dataset):
    """Wraps the baseline :class:`ClassificationDataset`; items are dicts with ``img``,
    ``label``, ``index``, ``epoch``, ``skipped`` (bool) and ``csd``: None, or a dict with
    ``x_s``/``x_fg``/``x_bg`` float [3, S, S], ``m_fg`` (M_fg of X_s) and ``m_bg`` (B) bool
    [S, S], ``cls`` (pasted class c) and ``label_fg`` [K] (L_m + {c})."""

    def __init__(self, base: ClassificationDataset, masks: MaskStore,
                 sampler: CooccurrenceSampler | ContextSampler, apply_to: str = "multi",
                 fg_paste: str = "same_location") -> None:
        if apply_to not in ("multi", "all"):
            raise ValueError(f"csd.apply_to must be multi or all, got '{apply_to}'")
        if fg_paste not in ("same_location", "random"):
            raise ValueError(f"csd.fg_paste must be same_location or random, got '{fg_paste}'")
        self.base, self.masks, self.sampler = base, masks, sampler
        self.apply_to, self.fg_paste = apply_to, fg_paste
        self.source = base.source

    def __len__(self) -> int:
        return len(self.base)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_id = self.source.ids[index]
        img, mask = self.source.load_image(image_id), self.masks.load(image_id)
        if mask.shape != img.shape[:2]:
            raise DataError(f"mask {self.masks.path(image_id)} is {mask.shape} but the image is "
                            f"{img.shape[:2]}; the masks were made for other images")
        return img, mask

    def draw(self, index: int, rng: np.random.Generator) -> tuple[int, int] | None | bool:
        """(c, j) for a sample that gets views, None when no class is eligible (skipped),
        False when the sample is not meant to get views (a single-label one, apply_to=multi)."""
        classes = np.flatnonzero(self.source.labels[index] > 0)
        single = len(classes) == 1
        if single and self.apply_to == "multi":
            return False
        return self.sampler.pair(index, classes, rng, exclude_own=single)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        img, mask = self._load(index)
        x_m, (lab_m,) = self.base.augment(img, sample_rng(self.base.seed, epoch, index), (mask,))
        label = self.source.labels[index]
        item = {"img": torch.from_numpy(x_m), "label": torch.from_numpy(label),
                "index": torch.tensor(index), "epoch": torch.tensor(epoch), "csd": None,
                "skipped": False}
        rng = np.random.default_rng([self.base.seed, epoch, index, CSD_STREAM])
        drawn = self.draw(index, rng)
        if drawn is None:
            item["skipped"] = True
        if not drawn:
            return item
        c, j = drawn
        img_s, mask_s = self._load(j)
        x_s, (lab_s,) = self.base.augment(img_s, rng, (mask_s,))  # the same recipe as X_m
        if self.fg_paste == "random":
            x_s, lab_s = random_placement(x_s, lab_s, rng)
        fg_s, _ = masks_from_labels(lab_s)
        _, bg_m = masks_from_labels(lab_m)
        b = bg_paste_mask(fg_s, bg_m)  # once: X_sm_bg's mask is also the loss's m_bg
        label_fg = label.copy()
        label_fg[c] = 1.0
        item["csd"] = {
            "x_s": torch.from_numpy(np.ascontiguousarray(x_s)),
            "x_fg": torch.from_numpy(paste(x_s, x_m, fg_s)),
            "x_bg": torch.from_numpy(paste(x_s, x_m, b)),
            "m_fg": torch.from_numpy(fg_s), "m_bg": torch.from_numpy(b),
            "cls": torch.tensor(c), "label_fg": torch.from_numpy(label_fg),
            "source_index": torch.tensor(j)}
        return item


def csd_collate(items: list[dict]) -> dict[str, torch.Tensor]:
    """Stack X_m for all B samples; stack the views of the M samples that have them.

    ``rows`` [M] gives each view's X_m row in the batch; empty views are [0, ...] tensors.
    """
    batch = {k: torch.stack([it[k] for it in items]) for k in ("img", "label", "index", "epoch")}
    batch["skipped"] = torch.tensor(sum(bool(it["skipped"]) for it in items))
    rows = [n for n, it in enumerate(items) if it["csd"] is not None]
    batch["rows"] = torch.tensor(rows, dtype=torch.long)
    keys = ("x_s", "x_fg", "x_bg", "m_fg", "m_bg", "cls", "label_fg", "source_index")
    if rows:
        for k in keys:
            batch[k] = torch.stack([items[n]["csd"][k] for n in rows])
    else:
        S, K = items[0]["img"].shape[-1], items[0]["label"].shape[0]
        empty = {"x_s": (0, 3, S, S), "x_fg": (0, 3, S, S), "x_bg": (0, 3, S, S)}
        for k in ("x_s", "x_fg", "x_bg"):
            batch[k] = torch.zeros(empty[k])
        batch["m_fg"] = batch["m_bg"] = torch.zeros(0, S, S, dtype=torch.bool)
        batch["cls"] = batch["source_index"] = torch.zeros(0, dtype=torch.long)
        batch["label_fg"] = torch.zeros(0, K)
    return batch
