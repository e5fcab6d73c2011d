"""``csdseg train-cam``: train the multi-label classifier whose activation maps localise objects.

Defaults are IRN's recipe (ResNet-50, batch 16, 5 epochs, crop 512, SGD lr 0.1 with 10x on the
classifier, poly decay). With ``csd.enabled=true`` the CSD consistency terms are added (see
csdseg/csd/). Writes checkpoints/cam.pt, logs/train_cam.jsonl and tb/train_cam/.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from csdseg.config import Config, to_dict
from csdseg.data import build_source
from csdseg.data.augment import cam_augment
from csdseg.data.cam_dataset import ClassificationDataset
from csdseg.device import amp_enabled, resolve_device
from csdseg.config.fingerprint import resume_difference
from csdseg.engine import dist
from csdseg.engine.checkpoint import load_weights, unwrap
from csdseg.engine.loop import TrainSpec, train
from csdseg.engine.schedule import poly_schedule, sgd, warmup_cosine_lr
from csdseg.engine.seed import seed_everything
from csdseg.files.atomic import atomic_write_json
from csdseg.runs import RunDir
from csdseg.stages.cam_model import build_cam_model

HELP = "train the CAM classifier (IRN or MCTformer baseline, optionally with CSD)"
log = logging.getLogger("csdseg.train_cam")


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    groups = unwrap(model).param_groups(cfg.optim.lr, cfg.optim.weight_decay,
                                        cfg.optim.head_lr_mult)
    if cfg.optim.name == "sgd":
        return sgd(groups, cfg.optim)
    return torch.optim.AdamW(groups, lr=cfg.optim.lr)


def lr_schedule(cfg: Config, steps_per_epoch: int):
    if cfg.optim.schedule == "poly":
        return poly_schedule(cfg.optim)
    warmup = cfg.optim.warmup_epochs * steps_per_epoch
    return lambda step, total: warmup_cosine_lr(cfg.optim.lr, step, total, warmup, cfg.optim.min_lr)


def init_checkpoint(spec: str) -> Path:
    """``train.init_from`` is a ``.pt`` file or a run directory (its checkpoints/cam.pt)."""
    path = Path(spec)
    return path if path.suffix == ".pt" else RunDir(path).checkpoint("cam")


def classification_step(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
    out = model(batch["img"])
    loss = unwrap(model).classification_loss(out, batch["label"])
    return loss, {"loss_cls": float(loss.detach())}


def run(cfg: Config) -> dict:
    device = dist.init_from_env(resolve_device(cfg.device))
    seed_everything(cfg.seed)
    run_dir = RunDir.from_config(cfg)
    source = build_source(cfg.data, cfg.data.train_split)
    model = build_cam_model(cfg.model, source.num_classes)
    if cfg.train.init_from:  # warm start from another run's classifier (same classes)
        load_weights(model, init_checkpoint(cfg.train.init_from),
                     expect={"model": cfg.model.name, "num_classes": source.num_classes})
    model.to(device)
    if dist.is_main():
        run_dir.start_stage("train_cam", cfg)
    dataset = ClassificationDataset(source, cam_augment(cfg.train), cfg.seed)
    step_fn, collate = classification_step, None
    if cfg.csd.enabled:
        from csdseg.csd.trainer import build_csd_training

        dataset, step_fn, collate = build_csd_training(cfg, source, dataset, run_dir)
    optimizer = build_optimizer(cfg, model)
    steps_per_epoch = len(source) // cfg.train.batch_size
    spec = TrainSpec(
        config_difference=resume_difference,
        stage="train_cam", ckpt_name="cam", model=model, optimizer=optimizer, dataset=dataset,
        batch_size=cfg.train.batch_size, epochs=cfg.train.epochs,
        lr_at=lr_schedule(cfg, steps_per_epoch), step_fn=step_fn, device=device, run=run_dir,
        seed=cfg.seed, amp=amp_enabled(device, cfg.train.amp), num_workers=cfg.data.num_workers,
        max_steps=cfg.train.max_steps, log_every=cfg.train.log_every,
        save_every=cfg.train.save_every, config=to_dict(cfg), collate_fn=collate,
        meta={"model": cfg.model.name, "num_classes": source.num_classes,
              "class_names": source.class_names},
    )
    result = train(spec)
    if dist.is_main():
        log.info("train-cam finished after %d steps: %s -> %s", result["step"], result["last"],
                 run_dir.checkpoint("cam"))
        if hasattr(step_fn, "summary"):  # CSD: how many samples and batches it touched
            log.info("%s", step_fn.summary())
            # kept beside the evaluations: the pipeline table shows it (a CSD run that hardly
            # built a sample reads like a CSD run otherwise; issue 31)
            atomic_write_json(run_dir.report("csd_counts"), step_fn.counts.totals())
    return result
