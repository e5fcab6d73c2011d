"""train-aff: PSA's AffinityNet on the confident labels of the run's CAMs (PSA's train_aff.py).

Reads the images of ``data.train_split`` and their CAMs (``runs/<name>/cam/``, from
``csdseg make-cam``); first makes the two CRF score maps of every training image
(``runs/<name>/psa_scores/``, csdseg/refiners/psa_scores.py: kept, so a rerun or a resume skips
them), then trains; writes ``runs/<name>/checkpoints/aff.pt`` (``aff_last.pt`` while training,
so a killed run resumes). The ``psa`` refiner (refine.method=psa) walks the CAMs over its affinities.

One sample (PSA's VOC12AffDataset): colour jitter 0.3/0.3/0.3/0.1 on the whole image, a random
``psa.crop_size`` crop of the image and both score maps at one offset, zero-padded where the
image is smaller (black pixels, normalised afterwards as PSA; scores 0 there, so those cells
are ignored), a horizontal flip, ImageNet normalisation; the pair labels (bg-bg, fg-fg,
negative within radius 5 on the stride-8 grid) from the 8 x 8 block means of the cropped scores.

PSA's recipe (the defaults): batch 8, 8 epochs, SGD lr 0.1 on the trainable backbone and 10x
on the new convs, weight decay 5e-4, effective momentum 5e-4, poly 0.9; MCTformer's copy
(voc_mct.yaml): lr 0.01, 5 epochs, from PSA's classifier ``res38_cls.pth``. Under torchrun the
score maps are split over the ranks before they join, and each rank normalises the loss by its
own pair counts (PSA's DataParallel counts over the whole batch: a small deviation).
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from csdseg.config import Config, ConfigError, PsaConfig, to_dict
from csdseg.data import Source, build_source
from csdseg.data.augment import normalize_lut
from csdseg.data.colour_jitter import colour_jitter
from csdseg.data.transforms import keyed_sample, random_crop
from csdseg.device import resolve_device
from csdseg.config.fingerprint import resume_difference
from csdseg.engine import dist
from csdseg.engine.loop import TrainSpec, train
from csdseg.engine.schedule import poly_schedule, sgd
from csdseg.models.affinitynet import AFF_NETWORKS, AffinityNet
from csdseg.models.resnet38d import load_psa_weights
from csdseg.ops.parallel import resolve_workers
from csdseg.ops.psa_affinity import PSA_RADIUS, PSA_STRIDE, affinity_loss, pair_labels
from csdseg.refiners.psa_scores import load_scores, make_scores, score_dir
from csdseg.runs import RunDir

HELP = "train PSA's AffinityNet on the CAMs' confident labels (PSA's train_aff; refine.method=psa)"
STAGE = "train-aff"
log = logging.getLogger(__name__)
MIN_CROP = PSA_STRIDE * (2 * PSA_RADIUS - 1)  # PSA's pairs need a grid 2r - 1 cells wide


def check(p: PsaConfig) -> None:
    if p.crop_size % PSA_STRIDE or p.crop_size < MIN_CROP:
        raise ConfigError(f"psa.crop_size must be a multiple of {PSA_STRIDE} and at least "
                          f"{MIN_CROP} (radius {PSA_RADIUS} on the stride-8 grid), got "
                          f"{p.crop_size}")
    if len(p.colour_jitter) != 4:
        raise ConfigError("psa.colour_jitter must be 4 strengths [brightness, contrast, "
                          f"saturation, hue], got {p.colour_jitter}")


def build_network(p: PsaConfig) -> AffinityNet:
    return AFF_NETWORKS[p.network]()


class AffDataset(Dataset):
    """(epoch, index) -> image [3, S, S] and PSA's pair labels [D, Ns] for one random crop."""

    def __init__(self, source: Source, folder, p: PsaConfig, seed: int) -> None:
        self.source, self.folder, self.p, self.seed = source, folder, p, seed

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        image_id, rng, img = keyed_sample(self.source, self.seed, key)
        low, high = load_scores(self.folder / f"{image_id}.npz", img.shape[:2])
        img = colour_jitter(img, rng, *self.p.colour_jitter)
        chw, low, high = random_crop([np.ascontiguousarray(img.transpose(2, 0, 1)), low, high],
                                     self.p.crop_size, [0, 0.0, 0.0], rng)
        if self.p.hflip and rng.random() < 0.5:
            chw, low, high = (np.ascontiguousarray(a[..., ::-1]) for a in (chw, low, high))
        bg_pos, fg_pos, neg = pair_labels(low.transpose(1, 2, 0), high.transpose(1, 2, 0))
        return {"img": torch.from_numpy(normalize_lut(chw)), "bg_pos": torch.from_numpy(bg_pos),
                "fg_pos": torch.from_numpy(fg_pos), "neg": torch.from_numpy(neg)}


class AffStep:
    """PSA's loss of one batch (bg/4 + fg/4 + neg/2); the three terms and counts are logged."""

    def __call__(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        aff = model(batch["img"])
        loss, parts = affinity_loss(aff, batch["bg_pos"], batch["fg_pos"], batch["neg"])
        return loss, {k: float(v.detach()) for k, v in parts.items()}


def load_start_weights(model: AffinityNet, p: PsaConfig) -> None:
    if p.weights == "none":
        if p.network == "resnet38d_aff":
            log.warning("psa.weights=none: PSA's ResNet-38 from random weights; PSA starts from "
                        "ImageNet weights, MCTformer from res38_cls.pth (docs/method.md)")
        return
    if not os.path.isfile(p.weights):
        raise ConfigError(f"psa.weights: {p.weights} is not a file; give PSA's res38_cls.pth or "
                          "the converted ImageNet .npz (docs/method.md), or none")
    try:
        fresh = load_psa_weights(model, p.weights)
    except ValueError as exc:
        raise ConfigError(f"psa.weights: {exc}") from None
    log.info("psa.weights %s loaded; %d tensors start from their initialisation", p.weights,
             len(fresh))


def run(cfg: Config) -> dict:
    p = cfg.psa
    check(p)
    rd = RunDir.from_config(cfg)
    cam_dir = rd.require(rd.cam_dir, made_by="make-cam")
    rd.start_stage(STAGE, cfg)
    source = build_source(cfg.data, cfg.data.train_split)
    # Before joining the process group: CRFs take long, and a rank waiting at a barrier meanwhile
    # could time out. Each rank makes its share; joining the group waits for all of them.
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    workers = max(1, resolve_workers(cfg.ir_label.num_workers) // world)
    folder = score_dir(rd)
    make_scores(source, dist.shard(source.ids, rank, world), cam_dir, folder, p.low_alpha,
                p.high_alpha, workers)
    device = dist.init_from_env(resolve_device(cfg.device))
    dist.barrier()
    torch.manual_seed(cfg.seed)
    model = build_network(p)
    load_start_weights(model, p)
    optimizer = sgd(model.param_groups(p.lr, p.weight_decay, p.head_lr_mult), p)
    spec = TrainSpec(
        config_difference=resume_difference,
        stage="train_aff", ckpt_name="aff", model=model, optimizer=optimizer,
        dataset=AffDataset(source, folder, p, cfg.seed), batch_size=p.batch_size,
        epochs=p.epochs, lr_at=poly_schedule(p), log_every=p.log_every, save_every=p.save_every,
        step_fn=AffStep(), device=device, run=rd, seed=cfg.seed,
        num_workers=cfg.data.num_workers, max_steps=p.max_steps,
        config={"psa": to_dict(cfg)["psa"], "data": to_dict(cfg)["data"], "seed": cfg.seed},
        meta={"model": "affinitynet", "network": p.network},
    )
    return train(spec)
