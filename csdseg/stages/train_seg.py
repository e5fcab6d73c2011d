"""Train the segmentation network (DeepLab) on the run's pseudo-masks.

Reads ``sem_seg/<id>.png`` (or ``seg.pseudo_dir``) for every id of ``data.train_split`` and
trains ``seg.model`` (``seg.pseudo_dir=gt``: on the split's true masks, the fully supervised
ceiling every weakly supervised figure is read against) with DeepLab-v2's VOC recipe: pixel-wise cross-entropy ignoring 255, SGD
(momentum 0.9, weight decay 5e-4) at lr 2.5e-4 with the head at 10x, poly decay (power 0.9),
random scale 0.5-1.5, flip, 321 crops (512 for DeepLab-v3+), batch 10. After each epoch it
scores single-scale predictions on ``seg.eval_split`` when that split has ground-truth masks
(logged as ``val_miou``). Writes ``checkpoints/seg.pt`` (``seg_last.pt`` while training, so a
killed run resumes where it stopped); an existing ``seg.pt`` means the stage is done.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from csdseg.config import Config, ConfigError, SegConfig, to_dict
from csdseg.data import build_source
from csdseg.data.classes import IGNORE_INDEX
from csdseg.data.seg_dataset import SegTrainDataset, check_pseudo_masks
from csdseg.data.source import Source
from csdseg.device import amp_enabled, resolve_device
from csdseg.config.fingerprint import resume_difference
from csdseg.engine import dist
from csdseg.engine.loop import TrainSpec, train
from csdseg.engine.schedule import poly_schedule, sgd
from csdseg.engine.seed import seed_everything
from csdseg.models.deeplab import DEFAULT_CROP, SEG_MODELS, build_seg_model
from csdseg.ops.seg_inference import predict_probs
from csdseg.runs import RunDir

HELP = "train the segmentation network (DeepLab) on the pseudo-masks"
STAGE = "train_seg"
CKPT = "seg"
GROUND_TRUTH = "gt"  # seg.pseudo_dir=gt: the train split's true masks (the supervised ceiling)
log = logging.getLogger("csdseg.train_seg")


def model_kwargs(seg: SegConfig) -> dict[str, Any]:
    """Constructor arguments the config sets (the rest keep the model's defaults)."""
    if seg.model not in SEG_MODELS:
        raise ConfigError(f"seg.model '{seg.model}' is not one of: {', '.join(SEG_MODELS)}")
    kwargs: dict[str, Any] = {}
    if seg.backbone:
        kwargs["backbone"] = seg.backbone
    if seg.output_stride:
        if seg.output_stride not in (8, 16):
            raise ConfigError(f"seg.output_stride must be 0 (model default), 8 or 16, got "
                              f"{seg.output_stride}")
        kwargs["output_stride"] = seg.output_stride
    if seg.model.startswith("deeplabv2"):
        kwargs["frozen_bn"] = seg.frozen_bn
    return kwargs


def build_from_config(seg: SegConfig, num_classes: int) -> nn.Module:
    try:
        return build_seg_model(seg.model, num_classes, pretrained=seg.pretrained, **model_kwargs(seg))
    except ValueError as exc:
        raise ConfigError(f"seg: {exc}") from None


def seg_loss(logits: torch.Tensor, target: torch.Tensor, loss_at: str = "input") -> torch.Tensor:
    """Mean cross-entropy over the pixels whose target is not 255.

    logits [B, C, h, w]; target int64 [B, H, W]. ``loss_at="input"`` upsamples the logits to
    H x W (bilinear); ``"logits"`` downsamples the target to h x w (nearest, DeepLab-v2 Caffe).
    A batch with no labelled pixel gives a zero loss (with gradients) instead of NaN.
    """
    if loss_at == "input":
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear",
                                   align_corners=False)
    elif loss_at == "logits":
        if logits.shape[-2:] != target.shape[-2:]:
            target = F.interpolate(target[:, None].float(), size=logits.shape[-2:],
                                   mode="nearest")[:, 0].long()
    else:
        raise ValueError(f"loss_at must be 'input' or 'logits', got '{loss_at}'")
    if not (target != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)


def validation_miou(model: nn.Module, source: Source, ids: list[str],
                    device: torch.device) -> float | None:
    """Single-scale mIoU of ``model`` on ``ids`` (model left in eval mode; caller restores)."""
    from csdseg.evaluation import evaluate_labels

    model.eval()

    def labels(image_id: str):
        return predict_probs(model, source.load_image(image_id), device).argmax(0)

    return evaluate_labels(source, ids, labels, progress=False)["miou"]


def run(cfg: Config) -> dict[str, Any]:
    seg = cfg.seg
    run_dir = RunDir.from_config(cfg)
    final = run_dir.checkpoint(CKPT)
    if final.is_file():
        print(f"{final} exists; train-seg is done (delete it to retrain)")
        return {"skipped": True}
    if seg.loss_at not in ("input", "logits"):
        raise ConfigError(f"seg.loss_at must be input or logits, got '{seg.loss_at}'")
    if len(seg.scale_range) != 2:
        raise ConfigError("seg.scale_range must be [lo, hi]")
    source = build_source(cfg.data, cfg.data.train_split)
    if seg.pseudo_dir == GROUND_TRUTH:  # the ceiling: the same network on the true masks
        if not source.has_masks():
            raise ConfigError(f"seg.pseudo_dir=gt: split '{cfg.data.train_split}' has no "
                              "ground-truth masks to train the ceiling on")
        mask_dir = None
    else:
        mask_dir = Path(seg.pseudo_dir) if seg.pseudo_dir else run_dir.sem_seg_dir
        run_dir.require(mask_dir, made_by="make-sem-seg")
        check_pseudo_masks(mask_dir, source.ids)
    device = dist.init_from_env(resolve_device(cfg.device))
    seed_everything(cfg.seed)
    model = build_from_config(seg, source.num_classes)
    crop = seg.crop_size or DEFAULT_CROP[seg.model]
    dataset = SegTrainDataset(source, source.ids, mask_dir, crop, tuple(seg.scale_range),
                              seg.hflip, cfg.seed)
    optimizer = sgd(model.param_groups(seg.lr, seg.weight_decay, seg.head_lr_mult), seg)

    val_source = None
    if seg.val_every > 0:
        val_source = build_source(cfg.data, seg.eval_split)
        if not val_source.has_masks():
            log.info("split '%s' has no masks: no validation during training", seg.eval_split)
            val_source = None

    def on_epoch_end(epoch: int, step: int) -> dict[str, float] | None:
        if val_source is None or (epoch + 1) % seg.val_every or not dist.is_main():
            return None
        miou = validation_miou(model, val_source, val_source.ids, device)
        model.train()
        log.info("epoch %d: val mIoU %.2f on %s", epoch + 1, 100 * (miou or 0.0), seg.eval_split)
        return {"val_miou": miou} if miou is not None else None

    def step_fn(net: nn.Module, batch: dict[str, torch.Tensor]):
        return seg_loss(net(batch["img"]), batch["mask"], seg.loss_at), {}

    run_dir.start_stage(STAGE, cfg)
    meta = {"model": seg.model, "num_classes": source.num_classes,
            "class_names": list(source.class_names), "model_config": model.config(),
            "crop_size": crop}
    config = {k: v for k, v in to_dict(cfg).items() if k in ("data", "seg", "seed")}
    spec = TrainSpec(stage=STAGE, ckpt_name=CKPT, model=model, optimizer=optimizer,
                     config_difference=resume_difference,
                     dataset=dataset, batch_size=seg.batch_size, epochs=seg.epochs,
                     lr_at=poly_schedule(seg),
                     step_fn=step_fn, device=device, run=run_dir, seed=cfg.seed,
                     amp=amp_enabled(device, seg.amp), num_workers=seg.num_workers,
                     max_steps=seg.max_steps, log_every=seg.log_every,
                     save_every=seg.save_every, config=config, meta=meta,
                     on_epoch_end=on_epoch_end)
    result = train(spec)
    print(f"train-seg: {result['step']} steps, final weights in {final}")
    return result
