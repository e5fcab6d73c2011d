"""train-irn: learn class boundaries and displacements from confident labels (IRN's train_irn).

Reads the images of ``data.train_split`` and ``runs/<name>/ir_label/<id>.png`` (from
``csdseg make-ir-label``); writes ``runs/<name>/checkpoints/irn.pt`` (``irn_last.pt`` while
training, so a killed run resumes). Pairs of pixels within ``irn.path_radius`` (10) at stride 4
that are both confident give the affinity and displacement targets.

IRN's recipe (the defaults): crop 512, batch 32, 3 epochs, random rescale 0.5-1.5 and flips,
SGD with lr 0.1 on the boundary branch and 1.0 on the displacement branch, weight decay 1e-4,
poly decay; the ImageNet backbone is frozen.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from csdseg.config import Config, ConfigError, to_dict
from csdseg.data import Source, build_source
from csdseg.data.augment import ScaleCrop
from csdseg.data.transforms import keyed_sample
from csdseg.device import resolve_device
from csdseg.config.fingerprint import resume_difference
from csdseg.engine import dist
from csdseg.engine.checkpoint import load_checkpoint
from csdseg.engine.loop import TrainSpec, train
from csdseg.engine.schedule import poly_schedule, sgd
from csdseg.losses.affinity import irn_losses, pair_displacement
from csdseg.errors import StageError
from csdseg.files.labels import read_label_png
from csdseg.models.irn import IRNet
from csdseg.ops.affinity import affinity_labels, boundary_to_affinity
from csdseg.ops.path_index import PathIndex
from csdseg.runs import RunDir

HELP = "train IRN's boundary/displacement network on confident labels (IRN's train_irn)"
STAGE = "train-irn"


class AffinityDataset(Dataset):
    """(epoch, index) -> image [3, S, S] and affinity masks [D, Ns] for one random crop."""

    def __init__(self, source: Source, label_dir: Path, crop: int, rescale: tuple[float, float],
                 hflip: bool, seed: int, index: PathIndex) -> None:
        self.source, self.label_dir, self.crop, self.seed = source, label_dir, crop, seed
        self.augment = ScaleCrop(crop, rescale, hflip)
        size = -(-crop // 4)  # the network's stride-4 output size
        self.src, self.dst = index.cropped_pairs(size, size)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        image_id, rng, img = keyed_sample(self.source, self.seed, key)
        label = read_label_png(self.label_dir / f"{image_id}.png", self.source.num_classes,
                               img.shape[:2], made_by="make-ir-label", what="confident labels")
        img, (label,) = self.augment(img, rng, (label,))
        # nearest-neighbour x0.25, as IRN's cv2.resize(fx=0.25) on a multiple-of-4 crop
        bg_pos, fg_pos, neg = affinity_labels(label[::4, ::4], self.src, self.dst)
        return {"img": torch.from_numpy(img), "bg_pos": torch.from_numpy(bg_pos),
                "fg_pos": torch.from_numpy(fg_pos), "neg": torch.from_numpy(neg)}


class IrnStep:
    """The loss of one batch; holds the path indices on the training device."""

    def __init__(self, index: PathIndex, size: int, device: torch.device) -> None:
        src, dst = index.cropped_pairs(size, size)
        self.index = index
        self.src, self.dst = torch.from_numpy(src).to(device), torch.from_numpy(dst).to(device)
        self.paths = [torch.from_numpy(p).to(device) for p in index.cropped_paths(size, size)]
        self.offsets = torch.from_numpy(index.offsets_float).to(device)

    def __call__(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        edge, dp = model(batch["img"])
        aff = boundary_to_affinity(torch.sigmoid(edge[:, 0]).float(), self.index, self.paths)
        disp = pair_displacement(dp.float(), self.src, self.dst)
        return irn_losses(aff, disp, self.offsets, batch["bg_pos"], batch["fg_pos"], batch["neg"])


def run(cfg: Config) -> dict:
    c = cfg.irn
    if c.path_radius < 2 or -(-c.crop_size // 4) < 2 * c.path_radius - 1:
        raise ConfigError(f"irn.crop_size {c.crop_size} is too small for irn.path_radius "
                          f"{c.path_radius}: use crop_size >= {4 * (2 * c.path_radius - 1)}")
    run_dir = RunDir.from_config(cfg)
    label_dir = run_dir.require(run_dir.ir_label_dir, made_by="make-ir-label")
    run_dir.start_stage(STAGE, cfg)
    # under torchrun: join the group and take this rank's GPU, as the other training stages
    # (without it every rank trained the whole batch alone, all of them on cuda:0)
    device = dist.init_from_env(resolve_device(cfg.device))
    index = PathIndex(c.path_radius)
    source = build_source(cfg.data, cfg.data.train_split)
    dataset = AffinityDataset(source, label_dir, c.crop_size, (c.scale_range[0], c.scale_range[1]),
                              c.hflip, cfg.seed, index)
    torch.manual_seed(cfg.seed)
    try:  # the model layer raises ValueError; a bad irn.pretrained is the user's to fix
        model = IRNet(c.backbone, c.pretrained, c.train_backbone)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if c.backbone_from_cam:  # from-scratch runs: the CAM classifier's features, not ImageNet's
        cam_ckpt = run_dir.require(run_dir.checkpoint("cam"), made_by="train-cam")
        try:
            model.load_backbone_from_cam(load_checkpoint(cam_ckpt)["model"])
        except ValueError as exc:
            raise StageError(f"irn.backbone_from_cam: {cam_ckpt}: {exc}") from None
    optimizer = sgd(model.param_groups(c.lr, c.weight_decay, c.dp_lr_mult), c)
    spec = TrainSpec(
        config_difference=resume_difference,
        stage="train_irn", ckpt_name="irn", model=model, optimizer=optimizer, dataset=dataset,
        batch_size=c.batch_size, epochs=c.epochs,
        lr_at=poly_schedule(c), log_every=c.log_every, save_every=c.save_every,
        step_fn=IrnStep(index, -(-c.crop_size // 4), device), device=device, run=run_dir,
        seed=cfg.seed, num_workers=cfg.data.num_workers, max_steps=c.max_steps,
        config={"irn": to_dict(cfg)["irn"], "data": to_dict(cfg)["data"], "seed": cfg.seed},
        meta={"model": "irn", "backbone": c.backbone},
    )
    return train(spec)
