"""The augmentation recipes: the table-lookup fast path equals the plain pipeline bit for bit,
masks follow the image, and every dataset that augments uses one of these objects."""
from __future__ import annotations

import numpy as np
import pytest

from csdseg.config import TrainConfig
from csdseg.data.augment import RandomResizedCrop, ResizeLongCrop, ScaleCrop, cam_augment
from csdseg.data.transforms import (normalize, random_crop, random_hflip, random_resize_long,
                                    random_resized_crop, random_scale)

RNG = np.random.default_rng(5)
IMG = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)
LABEL = RNG.integers(0, 4, (37, 53), dtype=np.uint8)


def reference(recipe, img, rng, label):
    """The recipe written the slow, obvious way: geometry, normalise the whole image, crop."""
    if isinstance(recipe, RandomResizedCrop):
        img, (label,) = random_resized_crop(img, recipe.crop_size, rng, (label,))
        if recipe.hflip:
            img, (label,) = random_hflip(img, rng, (label,))
        return normalize(img), label
    if isinstance(recipe, ResizeLongCrop):
        img, (label,) = random_resize_long(img, *recipe.resize_long, rng, (label,))
    else:
        img, (label,) = random_scale(img, *recipe.scale_range, rng, (label,))
    if recipe.hflip:
        img, (label,) = random_hflip(img, rng, (label,))
    x, label = random_crop([normalize(img), label], recipe.crop_size, [0.0, 255], rng)
    return x, label


@pytest.mark.parametrize("recipe", [ResizeLongCrop(32, (40, 70)), ResizeLongCrop(96, (40, 60)),
                                    ScaleCrop(32, (0.5, 1.5)), ScaleCrop(96, (0.7, 1.2), False),
                                    RandomResizedCrop(24), RandomResizedCrop(64, False)])
def test_fast_path_equals_the_plain_pipeline(recipe):
    for seed in range(6):  # crops inside the image and crops that pad
        x, (lab,) = recipe(IMG, np.random.default_rng(seed), (LABEL,))
        ref_x, ref_lab = reference(recipe, IMG, np.random.default_rng(seed), LABEL)
        assert x.dtype == np.float32 and x.shape == (3, recipe.crop_size, recipe.crop_size)
        assert np.array_equal(x, ref_x) and np.array_equal(lab, ref_lab)


def test_masks_follow_the_image_and_padding_is_void():
    img = np.zeros((20, 30, 3), np.uint8)
    img[:, 15:] = 255  # right half white, labelled 1
    label = np.zeros((20, 30), np.uint8)
    label[:, 15:] = 1
    x, (lab,) = ScaleCrop(48, (1.0, 1.0))(img, np.random.default_rng(0), (label,))
    white = x[0] > 2.0
    assert np.array_equal(white, lab == 1)
    assert (lab == 255).sum() == 48 * 48 - 20 * 30 and np.all(x[:, lab == 255] == 0)


def test_cam_augment_follows_train_augment():
    assert cam_augment(TrainConfig(crop_size=64, resize_long=[48, 80])) == \
        ResizeLongCrop(64, (48, 80), True)
    assert cam_augment(TrainConfig(crop_size=64, augment="mct", hflip=False)) == \
        RandomResizedCrop(64, False)
    with pytest.raises(ValueError, match="train.augment must be one of irn, mct"):
        cam_augment(TrainConfig(augment="randaug"))


def test_one_recipe_object_per_dataset():
    """No dataset re-implements a recipe: each holds an augment object from csdseg.data.augment."""
    import inspect

    from csdseg.csd.dataset import CSDDataset
    from csdseg.data.cam_dataset import ClassificationDataset
    from csdseg.data.seg_dataset import SegTrainDataset
    from csdseg.stages.train_irn import AffinityDataset

    for cls in (CSDDataset, ClassificationDataset, SegTrainDataset, AffinityDataset):
        text = inspect.getsource(cls)
        for name in ("random_crop(", "random_resize_long(", "random_scale(", "random_hflip(",
                     "random_resized_crop(", "normalize("):
            assert name not in text, f"{cls.__name__} calls {name} itself"
