"""gpu_check section 3: time and memory of each stage's unit of work at the official sizes.

Each item runs once to warm up (cuDNN's algorithm choice, the caching allocator), then
``repeats`` times, each ended by ``torch.cuda.synchronize`` so the clock sees the kernels; the
row is the median, with ``torch.cuda.max_memory_allocated`` since the item began. A training
step is the training loop's own: the step function under autocast where that stage uses AMP on
CUDA (train-cam, CSD, train-seg; not train-irn and train-aff), then csdseg.engine.loop.update
(backward, GradScaler, SGD). Rows carry seconds per image for the estimates (section 4).
"""
from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from gpu_check_models import (K, Sizes, aff_net, cam_net, irn_net, photo, seg_net,
                              smooth_cams)
from gpu_check_report import Row, Section

from csdseg.engine.loop import update
from csdseg.ops.cam import multiscale_cam
from csdseg.ops.cam_backend import torch_cam_fn

SECTION = "speed"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int
          ) -> tuple[float, float | None]:
    """(median seconds of ``fn`` after one warm-up, peak MiB allocated on CUDA or None)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None
    return statistics.median(times), peak


def row(item: str, seconds: float, peak: float | None, per: int, unit: str, note: str,
        stage: str) -> Row:
    """``per`` images in one unit; ``stage``: bench/cost_model.py's name for the estimate."""
    mem = f"peak {peak / 1024:.2f} GiB" if peak is not None else "memory: CUDA only"
    return Row(SECTION, item, seconds, unit, note=f"{note}; {mem}",
               extra={"per_image_s": seconds / per, "peak_mib": peak, "stage": stage})


def train_step(model: torch.nn.Module, step_fn, batch: dict, device: torch.device,
               amp: bool) -> Callable[[], None]:
    model.to(device).train()
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-6,
                                momentum=0.9)
    amp = amp and device.type == "cuda"  # as csdseg.device.amp_enabled
    scaler = torch.amp.GradScaler("cuda") if amp else None

    def step() -> None:
        with torch.autocast(device.type, enabled=amp):
            loss, _ = step_fn(model, batch)
        update(optimizer, scaler, loss)
    return step


def labels(batch: int) -> torch.Tensor:
    y = torch.zeros(batch, K)
    y[:, 3] = 1
    y[::2, 14] = 1
    return y


class Speed:
    def __init__(self, s: Sizes, device: torch.device, repeats: int) -> None:
        self.s, self.device, self.repeats = s, device, repeats
        self.img = photo(None, s.image)
        self.amp = "AMP" if device.type == "cuda" else "fp32 (AMP: CUDA only)"

    def timed(self, fn) -> tuple[float, float | None]:
        return timed(fn, self.device, self.repeats)

    def cam_step(self, name: str, batch: int, crop: int, stage: str) -> Row:
        from csdseg.stages.train_cam import classification_step

        data = {"img": torch.randn(batch, 3, crop, crop), "label": labels(batch)}
        sec, peak = self.timed(train_step(cam_net(name), classification_step, data,
                                          self.device, True))
        return row(f"train-cam step {name}", sec, peak, batch, "s/step",
                   f"batch {batch}, {crop} px, {self.amp}", stage)

    def csd_step(self) -> Row:
        from csd_overhead import MemorySource, build_dataset, multi_batch
        from csdseg.config import CsdConfig
        from csdseg.csd.trainer import CSDStep

        s = self.s
        _, data = build_dataset(MemorySource(4 * s.cam_batch), s.cam_crop, (s.cam_crop,) * 2)
        batch = multi_batch(data, s.cam_batch)
        sec, peak = self.timed(train_step(cam_net(s.cam), CSDStep(CsdConfig(enabled=True)),
                                          batch, self.device, True))
        return row(f"CSD train-cam step {s.cam}", sec, peak, s.cam_batch, "s/step",
                   f"batch {s.cam_batch} all multi-label (3B student + B teacher), {self.amp}",
                   "train-cam + CSD")

    def make_cam(self, name: str, scales, stage: str) -> Row:
        from csdseg.data.cam_dataset import MultiScaleDataset
        from make_cam import MemorySource

        model = cam_net(name).eval().to(self.device)
        label = np.isin(np.arange(K), [3, 14]).astype(np.float32)
        views = MultiScaleDataset(MemorySource([self.img], label), ["0"], list(scales))[0]["views"]
        keys = torch.tensor([3, 14])
        fn = torch_cam_fn(model, self.device)
        sec, peak = self.timed(lambda: multiscale_cam(fn, views, self.img.shape[:2], keys,
                                                      self.device, "max", model.upsample,
                                                      model.feature_stride))
        return row(f"make-cam {name}", sec, peak, 1, "s/image",
                   f"{self.img.shape[0]}x{self.img.shape[1]}, {len(scales)} scales + flip, fp32",
                   stage)

    def irn_step(self) -> Row:
        from csdseg.ops.affinity import affinity_labels
        from csdseg.ops.path_index import PathIndex
        from csdseg.stages.train_irn import IrnStep

        s = self.s
        size = -(-s.irn_crop // 4)
        index = PathIndex(s.irn_radius)
        src, dst = index.cropped_pairs(size, size)
        label = np.zeros((size, size), np.int64)
        label[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 4
        label[:, :2] = 255
        parts = [torch.from_numpy(a)[None].expand(s.irn_batch, *a.shape).contiguous()
                 for a in affinity_labels(label, src, dst)]
        batch = {"img": torch.randn(s.irn_batch, 3, s.irn_crop, s.irn_crop),
                 **dict(zip(("bg_pos", "fg_pos", "neg"), parts))}
        step = IrnStep(index, size, self.device)
        sec, peak = self.timed(train_step(irn_net(s.irn), step, batch, self.device, False))
        return row("train-irn step", sec, peak, s.irn_batch, "s/step",
                   f"{s.irn}, batch {s.irn_batch}, {s.irn_crop} px, fp32 (as train-irn)",
                   "train-irn")

    def walk(self) -> list[Row]:
        from csdseg.data.transforms import normalize
        from csdseg.ops.cam import strided_size
        from csdseg.ops.random_walk import random_walk, walk_to_labels

        s, dev = self.s, self.device
        model = irn_net(s.irn).eval().to(dev)
        x = torch.from_numpy(normalize(self.img)).to(dev)
        cams, keys = smooth_cams(strided_size(self.img.shape[:2], 4))
        cams = cams.to(dev)
        boundary = model.infer_boundary(x, s.irn_crop)
        b_sec, b_peak = self.timed(lambda: model.infer_boundary(x, s.irn_crop))
        w_sec, w_peak = self.timed(lambda: walk_to_labels(
            random_walk(cams, boundary, 10.0, s.walk_exp, 5), keys, self.img.shape[:2]))
        return [row("IRN boundary map", b_sec, b_peak, 1, "s/image",
                    f"image + mirror padded to {s.irn_crop}", "make-sem-seg IRN boundary"),
                row("IRN random walk", w_sec, w_peak, 1, "s/image",
                    f"{cams.shape[1]}x{cams.shape[2]} cells, 2^{s.walk_exp} steps",
                    "make-sem-seg (random walk)")]

    def aff_step(self) -> Row:
        from csdseg.ops.psa_affinity import pair_labels
        from csdseg.stages.train_aff import AffStep

        s = self.s
        yy = np.linspace(0, 1, s.aff_crop)[:, None, None]
        scores = np.concatenate([1 - yy, yy], 2).repeat(s.aff_crop, 1).astype(np.float32)
        parts = [torch.from_numpy(a)[None].expand(s.aff_batch, *a.shape).contiguous()
                 for a in pair_labels(scores, scores)]
        batch = {"img": torch.randn(s.aff_batch, 3, s.aff_crop, s.aff_crop),
                 **dict(zip(("bg_pos", "fg_pos", "neg"), parts))}
        sec, peak = self.timed(train_step(aff_net(s.aff), AffStep(), batch, self.device, False))
        return row("train-aff step", sec, peak, s.aff_batch, "s/step",
                   f"{s.aff}, batch {s.aff_batch}, {s.aff_crop} px, fp32 (as train-aff)",
                   "train-aff ResNet-38")

    def psa_infer(self) -> Row:
        from csdseg.data.transforms import normalize
        from csdseg.ops.psa_walk import psa_walk
        from csdseg.refiners.psa import padded_size

        model = aff_net(self.s.aff).eval().to(self.device)
        h, w = self.img.shape[:2]
        ph, pw = padded_size(h, w)
        x = F.pad(torch.from_numpy(normalize(self.img)), (0, pw - w, 0, ph - h))[None]
        x = x.to(self.device)
        high, keys = smooth_cams((h, w))
        high = high.to(self.device)

        def infer() -> None:
            with torch.no_grad():
                psa_walk(high, keys, model(x)[0], alpha=16.0, padded=(ph, pw))
        sec, peak = self.timed(infer)
        return row("PSA affinities + walk", sec, peak, 1, "s/image", "2^8 steps",
                   "make-sem-seg PSA affinities")

    def seg_step(self) -> Row:
        from csdseg.stages.train_seg import seg_loss

        s = self.s
        mask = torch.randint(0, K + 1, (s.seg_batch, s.seg_crop, s.seg_crop))
        mask[:, :4] = 255
        batch = {"img": torch.randn(s.seg_batch, 3, s.seg_crop, s.seg_crop), "mask": mask}
        sec, peak = self.timed(train_step(seg_net(s.seg), lambda m, b: (
            seg_loss(m(b["img"]), b["mask"]), {}), batch, self.device, True))
        return row("train-seg step", sec, peak, s.seg_batch, "s/step",
                   f"{s.seg}, batch {s.seg_batch}, {s.seg_crop} px, {self.amp}",
                   "train-seg DeepLab-v2")

    def seg_eval(self) -> Row:
        from csdseg.ops.seg_inference import predict_probs

        model = seg_net(self.s.seg).eval().to(self.device)
        scales = self.s.seg_scales
        sec, peak = self.timed(lambda: predict_probs(model, self.img, self.device, scales, True))
        return row("eval-seg MS+flip", sec, peak, 1, "s/image",
                   f"{len(scales)} scales + flip, fp32", "eval-seg DeepLab-v2 (val)")


def run(section: Section, s: Sizes, device: torch.device, repeats: int) -> None:
    sp = Speed(s, device, repeats)
    section.run("train-cam step", lambda: sp.cam_step(s.cam, s.cam_batch, s.cam_crop,
                                                     "train-cam ResNet-50"))
    section.run("CSD step", sp.csd_step)
    section.run("make-cam", lambda: sp.make_cam(s.cam, s.cam_scales, "make-cam ResNet-50"))
    section.run("train-irn step", sp.irn_step)
    section.run("IRN walk", sp.walk)
    section.run("MCTformer step", lambda: sp.cam_step(s.mct, s.mct_batch, s.mct_crop,
                                                      "train-cam MCTformer-V2"))
    section.run("MCTformer maps", lambda: sp.make_cam(s.mct, s.mct_scales,
                                                      "make-cam MCTformer-V2"))
    section.run("train-aff step", sp.aff_step)
    section.run("PSA inference", sp.psa_infer)
    section.run("train-seg step", sp.seg_step)
    section.run("eval-seg MS+flip", sp.seg_eval)
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
