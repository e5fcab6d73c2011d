"""``csdseg make-cam``: multi-scale + flip CAMs for every image of ``data.infer_split``.

Writes ``cam/<id>.npy`` in IRN's format (``csdseg.files.cam``) -- a dict with ``keys`` (present
class indices), ``cam`` (stride 4) and ``high_res`` (full size) -- as NumPy arrays, or with
``cam.format=irn`` exactly as the official IRN writes it (torch tensors in ``keys`` and ``cam``),
so that the official downstream scripts can read our maps.
Images already done are skipped, so a killed run resumes; every file is written atomically.
Under ``torchrun`` each rank takes a share of the images.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import DataLoader

from csdseg.files.cam import save_cam
from csdseg.config import Config
from csdseg.data import build_source
from csdseg.data.cam_dataset import MultiScaleDataset, check_cam_inputs, first_item
from csdseg.device import resolve_device
from csdseg.engine import dist
from csdseg.engine.checkpoint import load_weights
from csdseg.ops.cam import multiscale_cam
from csdseg.ops.cam_backend import cam_function
from csdseg.engine.progress import progress_bar
from csdseg.runs import RunDir
from csdseg.stages.cam_model import build_cam_model

HELP = "write multi-scale CAMs (IRN .npy format) for every image of data.infer_split"
log = logging.getLogger("csdseg.make_cam")


def load_cam_model(cfg: Config, num_classes: int, device: torch.device) -> torch.nn.Module:
    run_dir = RunDir.from_config(cfg)
    checkpoint = run_dir.require(run_dir.checkpoint("cam"), made_by="train-cam")
    model = build_cam_model(cfg.model, num_classes)
    load_weights(model, checkpoint, expect={"model": cfg.model.name, "num_classes": num_classes})
    model.eval().to(device)
    if device.type == "cpu":  # oneDNN convolutions run faster on channels-last tensors
        model.to(memory_format=torch.channels_last)
    return model


def run(cfg: Config) -> dict:
    device = dist.init_from_env(resolve_device(cfg.device))
    run_dir = RunDir.from_config(cfg)
    source = build_source(cfg.data, cfg.data.infer_split)
    model = load_cam_model(cfg, source.num_classes, device)
    out_dir = run_dir.cam_dir
    pending = [i for i in dist.shard(source.ids) if not (out_dir / f"{i}.npy").is_file()]
    check_cam_inputs(source, pending, cfg.cam.scales, model.feature_stride, cfg.cam.max_pixels,
                     cfg.model.name)  # refuse bad images before the run folder is touched
    if dist.is_main():
        run_dir.start_stage("make_cam", cfg)
    dist.barrier()  # every rank writes CAMs: none starts before rank 0 holds the run's lock
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [i for i in dist.shard(source.ids) if not (out_dir / f"{i}.npy").is_file()]
    skipped = len(dist.shard(source.ids)) - len(todo)
    dataset = MultiScaleDataset(source, todo, cfg.cam.scales, cfg.cam.flip)
    loader = DataLoader(dataset, batch_size=1, num_workers=cfg.data.num_workers,
                        collate_fn=first_item)
    cam_fn, backend = cam_function(model, cfg.cam.backend, device)
    upsample, stride = model.upsample, model.feature_stride
    if backend != "torch":  # the engine holds its own copy of the weights: drop torch's
        del model  # (~70 MB off the peak for ResNet-50, docs/benchmarks.md)
    log.info("make-cam: %s runs the CAM network", backend)
    for item in progress_bar(loader, desc="make-cam", disable=not dist.is_main()):
        keys = torch.from_numpy(np.nonzero(item["label"].numpy())[0])
        low, high = multiscale_cam(cam_fn, item["views"], tuple(item["size"]), keys, device,
                                   cfg.cam.normalize, upsample, stride)
        save_cam(out_dir / f"{item['id']}.npy", keys, low, high, fmt=cfg.cam.format)
    dist.barrier()
    log.info("make-cam: %d written, %d already present, in %s", len(todo), skipped, out_dir)
    return {"written": len(todo), "skipped": skipped}
