"""gpu_check's networks and sizes: the official recipes (read from the voc_irn / voc_mct presets,
as bench/cost_model.py does) or, with ``--tiny``, the CPU-sized variants at a few dozen pixels,
so the CPU run of the same code takes seconds. Weights are seeded random ones (no download):
speed does not depend on them, and agreement compares two copies of the same weights.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from csdseg.config import load_config
from csdseg.models import build_model
from csdseg.models.affinitynet import AFF_NETWORKS
from csdseg.models.deeplab import build_seg_model
from csdseg.models.irn import IRNet

K = 20  # VOC's foreground classes


@dataclass(frozen=True)
class Sizes:
    cam: str
    cam_batch: int
    cam_crop: int
    cam_scales: tuple[float, ...]
    mct: str
    mct_batch: int
    mct_crop: int
    mct_scales: tuple[float, ...]
    irn: str
    irn_batch: int
    irn_crop: int
    irn_radius: int
    walk_exp: int
    aff: str
    aff_batch: int
    aff_crop: int
    seg: str
    seg_batch: int
    seg_crop: int
    seg_scales: tuple[float, ...]
    image: tuple[int, int]  # the one image of make-cam, the walk and eval (VOC's 375 x 500)
    agree_image: tuple[int, int]  # agreement runs on both devices: half a VOC image


def sizes(tiny: bool) -> Sizes:
    irn, mct = load_config("voc_irn"), load_config("voc_mct")
    official = Sizes(
        cam=irn.model.name, cam_batch=irn.train.batch_size, cam_crop=irn.train.crop_size,
        cam_scales=tuple(irn.cam.scales), mct=mct.model.name, mct_batch=mct.train.batch_size,
        mct_crop=224, mct_scales=tuple(mct.cam.scales), irn=irn.irn.backbone,
        irn_batch=irn.irn.batch_size, irn_crop=irn.irn.crop_size,
        irn_radius=irn.irn.path_radius, walk_exp=irn.refine.exp_times, aff=mct.psa.network,
        aff_batch=mct.psa.batch_size, aff_crop=mct.psa.crop_size, seg=irn.seg.model,
        seg_batch=irn.seg.batch_size, seg_crop=irn.seg.crop_size or 321,
        seg_scales=tuple(irn.seg.scales), image=(375, 500), agree_image=(188, 250))
    if not tiny:
        return official
    return Sizes(cam="resnet10t_cam", cam_batch=2, cam_crop=64, cam_scales=(1.0, 0.5),
                 mct="mctformer_v2_tiny", mct_batch=4, mct_crop=64, mct_scales=(1.0,),
                 irn="resnet10t", irn_batch=2, irn_crop=64, irn_radius=4, walk_exp=4,
                 aff="affinitynet_tiny", aff_batch=1, aff_crop=72, seg="deeplabv2_tiny",
                 seg_batch=2, seg_crop=48, seg_scales=(1.0, 0.5), image=(48, 64),
                 agree_image=(48, 64))


def seeded(build, seed: int = 0) -> torch.nn.Module:
    """A network whose random weights depend on ``seed`` only."""
    torch.manual_seed(seed)
    return build()


def cam_net(name: str) -> torch.nn.Module:
    return seeded(lambda: build_model(name, K, "none"))


def irn_net(backbone: str) -> torch.nn.Module:
    return seeded(lambda: IRNet(backbone, "none"))


def aff_net(name: str) -> torch.nn.Module:
    return seeded(AFF_NETWORKS[name])


def seg_net(name: str) -> torch.nn.Module:
    return seeded(lambda: build_seg_model(name, K, "none"))


def pair(model: torch.nn.Module, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(the CPU copy, the device copy) of the same weights, both in eval mode."""
    cpu = model.eval()
    return cpu, copy.deepcopy(cpu).to(device).eval()


def photo(root: Path | None, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W, 3]: the synthetic dataset's first image at ``size``, else seeded noise."""
    files = sorted((root / "JPEGImages").glob("*.jpg")) if root is not None else []
    if files:
        with Image.open(files[0]) as im:
            return np.asarray(im.convert("RGB").resize(size[::-1], Image.BILINEAR))
    return np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)


def smooth_cams(size: tuple[int, int], n: int = 2) -> tuple[torch.Tensor, np.ndarray]:
    """``n`` blob-shaped maps [n, H, W] in [0, 1] and their class keys: a walk's input."""
    yy, xx = np.mgrid[:size[0], :size[1]] / np.array(size).reshape(2, 1, 1)
    centres = [(0.4, 0.3), (0.6, 0.7), (0.3, 0.8)][:n]
    maps = [np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.05) for cy, cx in centres]
    return torch.from_numpy(np.stack(maps).astype(np.float32)), np.array([3, 14, 7][:n])
