"""A cost model for planning: each stage's time on VOC train_aug and COCO, on this CPU and on a GPU.

    .venv/bin/python bench/cost_model.py [--threads 2] [--gpu-tflops 312] [--utilisation 0.35]

For every stage of the IRN and MCTformer recipes (the presets voc_irn / voc_mct; COCO the same
recipes on 82,783 images) the bench counts the FLOPs of one unit of its work (one training
image at the preset's crop, one image's multi-scale CAMs at 375 x 500, ...) with
``torch.utils.flop_counter`` on meta tensors (2 FLOPs per multiply-add; backward included),
times the same network on this CPU (the stage's unit, or a smaller batch of it) to get the
GFLOP/s it reaches here,
and times the CPU-only work (the dense CRFs, the random walk) on one 375 x 500 image directly.
CPU hours = FLOPs / that rate (plus the measured per-image times); GPU hours = FLOPs /
(``--gpu-tflops`` x ``--utilisation``), an assumption stated with the table, not a
measurement. Epochs, crops, batches and scales are read from the presets, so the model follows
the defaults.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import load, machine  # noqa: E402

from csdseg.config import load_config  # noqa: E402
from csdseg.config.sections import ModelConfig  # noqa: E402
from csdseg.models.affinitynet import AFF_NETWORKS  # noqa: E402
from csdseg.models.deeplab import build_seg_model  # noqa: E402
from csdseg.models.irn import IRNet  # noqa: E402
from csdseg.stages.cam_model import build_cam_model  # noqa: E402

RESOURCES = Path(__file__).resolve().parents[1] / "csdseg/data/resources"
VOC_IMAGE = (375, 500)  # a typical VOC image, the unit of the per-image stages
META = torch.device("meta")


def flops(fn: Callable[[torch.device], None]) -> float:
    with FlopCounterMode(display=False) as counter:
        fn(META)
    return float(counter.get_total_flops())


def cpu_rate(fn: Callable[[torch.device], None]) -> float:
    """GFLOP/s this CPU reaches on ``fn`` (one warm-up, then one timed run): the stage's own
    unit, or a batch of 1-8 at its crop (ResNet-38: 320 px), since small inputs run slower."""
    cpu = torch.device("cpu")
    fn(cpu)
    return flops(fn) / _timed(fn, cpu) / 1e9


def _timed(fn, device) -> float:
    start = time.perf_counter()
    fn(device)
    return time.perf_counter() - start


def train_step(build: Callable[[], torch.nn.Module], shape: tuple[int, ...],
               loss: Callable[[object], torch.Tensor]) -> Callable[[torch.device], None]:
    models: dict[str, torch.nn.Module] = {}

    def run(device: torch.device) -> None:
        if device.type not in models:
            models[device.type] = build().to(device).train()
        out = models[device.type](torch.randn(*shape, device=device))
        loss(out).backward()
    return run


def inference(build: Callable[[], torch.nn.Module], shapes: list[tuple[int, ...]],
              call: Callable[[torch.nn.Module, torch.Tensor], object]
              ) -> Callable[[torch.device], None]:
    models: dict[str, torch.nn.Module] = {}

    def run(device: torch.device) -> None:
        if device.type not in models:
            models[device.type] = build().to(device).eval()
        with torch.no_grad():
            for shape in shapes:
                call(models[device.type], torch.randn(*shape, device=device))
    return run


def scaled(scales: list[float], size=VOC_IMAGE, views: int = 2) -> list[tuple[int, ...]]:
    return [(views, 3, round(size[0] * s), round(size[1] * s)) for s in scales]


def cam_net(name: str, k: int) -> Callable[[], torch.nn.Module]:
    return lambda: build_cam_model(ModelConfig(name=name, pretrained="none"), k)


def photo() -> Path:
    """matplotlib's sample photo (Grace Hopper), which the Lite weights test also uses."""
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def per_image_seconds() -> dict[str, float]:
    """The CPU-only work of one 375 x 500 photo with 2 classes (smooth maps), timed directly."""
    from csdseg.ops.confident_labels import confident_labels
    from csdseg.ops.random_walk import random_walk

    from PIL import Image

    # a photo, not noise: the CRF's lattice grows with the colours an image holds
    with Image.open(photo()) as im:
        img = np.asarray(im.convert("RGB").resize(VOC_IMAGE[::-1]))
    yy, xx = np.mgrid[:VOC_IMAGE[0], :VOC_IMAGE[1]] / np.array(VOC_IMAGE).reshape(2, 1, 1)
    blobs = [np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.05) for cy, cx in ((0.4, 0.3), (0.6, 0.7))]
    cam = {"keys": np.array([3, 14]), "high_res": np.stack(blobs).astype(np.float32)}
    start = time.perf_counter()
    confident_labels(img, cam)
    crf = time.perf_counter() - start
    cams = torch.rand(3, 94, 125)
    boundary = torch.rand(94, 125)
    start = time.perf_counter()
    random_walk(cams, boundary, 10.0, 8, 5)
    return {"two CRFs": crf, "random walk": time.perf_counter() - start}


def datasets() -> list[tuple[str, int, int]]:
    """(name, training images, val images) of VOC train_aug and COCO, from the packaged lists."""
    def count(name: str) -> int:
        return len((RESOURCES / name).read_text().split())

    return [("VOC 2012 train_aug", count("voc12/train_aug.txt"), count("voc12/val.txt")),
            ("COCO 2014 train", count("coco14/train14.txt"), count("coco14/val14.txt"))]


def work_plan(irn, mct, n_train: int, n_val: int) -> list[tuple[str, str, int]]:
    """(recipe, stage, images processed) of every stage, from the presets' epochs: the work
    counts that bench/gpu_check.py also turns into hours with its measured rates."""
    t, i, s, p = irn.train, irn.irn, irn.seg, mct.psa
    return [("IRN", "train-cam ResNet-50", n_train * t.epochs),
            ("IRN", "make-cam ResNet-50", n_train),
            ("IRN", "make-ir-label (two CRFs)", n_train),
            ("IRN", "train-irn", n_train * i.epochs),
            ("IRN", "make-sem-seg IRN boundary", n_train),
            ("IRN", "make-sem-seg (random walk)", n_train),
            ("both", "train-seg DeepLab-v2", n_train * s.epochs),
            ("both", "eval-seg DeepLab-v2 (val)", n_val),
            ("MCT", "train-cam MCTformer-V2", n_train * mct.train.epochs),
            ("MCT", "make-cam MCTformer-V2", n_train),
            ("MCT", "PSA confident scores (two CRFs)", n_train),
            ("MCT", "train-aff ResNet-38", n_train * p.epochs),
            ("MCT", "make-sem-seg PSA affinities", n_train)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gpu-tflops", type=float, default=312.0,
                        help="the GPU's dense fp16/bf16 peak (A100: 312, H100 SXM: 989)")
    parser.add_argument("--utilisation", type=float, default=0.35,
                        help="the share of that peak the networks reach (an assumption)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}\nload at start: {load()}", flush=True)
    irn, mct = load_config("voc_irn"), load_config("voc_mct")
    k = 20
    t, i, s, p = irn.train, irn.irn, irn.seg, mct.psa
    crop_seg = s.crop_size or 321
    nets = {  # name: (FLOPs of one unit, a CPU-sized instance for the rate, unit)
        "train-cam ResNet-50": (
            train_step(cam_net("resnet50_cam", k), (t.batch_size, 3, t.crop_size, t.crop_size),
                       lambda o: o["logits"].sum()),
            train_step(cam_net("resnet50_cam", k), (2, 3, t.crop_size, t.crop_size),
                       lambda o: o["logits"].sum()),
            t.batch_size),
        "make-cam ResNet-50": (
            inference(cam_net("resnet50_cam", k), scaled(irn.cam.scales), lambda m, x: m.cam(x)),
            inference(cam_net("resnet50_cam", k), scaled(irn.cam.scales), lambda m, x: m.cam(x)),
            1),
        "train-irn": (
            train_step(lambda: IRNet(i.backbone, "none"), (i.batch_size, 3, i.crop_size,
                                                           i.crop_size),
                       lambda o: o[0].sum() + o[1].sum()),
            train_step(lambda: IRNet(i.backbone, "none"), (2, 3, i.crop_size, i.crop_size),
                       lambda o: o[0].sum() + o[1].sum()), i.batch_size),
        "make-sem-seg IRN boundary": (  # image + mirror, zero-padded to the crop (official)
            inference(lambda: IRNet(i.backbone, "none"), [(2, 3, i.crop_size, i.crop_size)],
                      lambda m, x: m(x)),
            inference(lambda: IRNet(i.backbone, "none"), [(2, 3, i.crop_size, i.crop_size)],
                      lambda m, x: m(x)),
            1),
        "train-seg DeepLab-v2": (
            train_step(lambda: build_seg_model(s.model, k), (s.batch_size, 3, crop_seg, crop_seg),
                       lambda o: o.sum()),
            train_step(lambda: build_seg_model(s.model, k), (1, 3, crop_seg, crop_seg),
                       lambda o: o.sum()),
            s.batch_size),
        "eval-seg DeepLab-v2 (val)": (
            inference(lambda: build_seg_model(s.model, k), scaled(s.scales), lambda m, x: m(x)),
            inference(lambda: build_seg_model(s.model, k), scaled([1.0]), lambda m, x: m(x)), 1),
        "train-cam MCTformer-V2": (
            train_step(cam_net(mct.model.name, k), (mct.train.batch_size, 3, 224, 224),
                       lambda o: o["logits"].sum()),
            train_step(cam_net(mct.model.name, k), (8, 3, 224, 224), lambda o: o["logits"].sum()),
            mct.train.batch_size),
        "make-cam MCTformer-V2": (
            inference(cam_net(mct.model.name, k), scaled(mct.cam.scales), lambda m, x: m.cam(x)),
            inference(cam_net(mct.model.name, k), scaled(mct.cam.scales), lambda m, x: m.cam(x)),
            1),
        "train-aff ResNet-38": (
            train_step(AFF_NETWORKS[p.network], (p.batch_size, 3, p.crop_size, p.crop_size),
                       lambda o: o.sum()),
            train_step(AFF_NETWORKS[p.network], (1, 3, 320, 320), lambda o: o.sum()),
            p.batch_size),
        "make-sem-seg PSA affinities": (
            inference(AFF_NETWORKS[p.network], scaled([1.0], views=1), lambda m, x: m(x)),
            inference(AFF_NETWORKS[p.network], scaled([1.0], views=1), lambda m, x: m(x)), 1),
    }
    gflop, rate = {}, {}
    for name, (full, small, per) in nets.items():
        gflop[name] = flops(full) / per / 1e9  # per image
        rate[name] = cpu_rate(small)
        print(f"{name}: {gflop[name]:.1f} GFLOP per image, {rate[name]:.1f} GFLOP/s here",
              flush=True)
    direct = per_image_seconds()
    print(f"per image, CPU only: two CRFs {direct['two CRFs']:.2f} s, random walk "
          f"{direct['random walk']:.2f} s\nload at end: {load()}\n")
    gpu = args.gpu_tflops * args.utilisation * 1e3  # GFLOP/s
    for dataset, n_train, n_val in datasets():
        plan = work_plan(irn, mct, n_train, n_val)
        print(f"#### {dataset}: {n_train:,} training images, {n_val:,} val\n")
        threads = f"{args.threads} thread{'s' if args.threads > 1 else ''}"
        print("| recipe | stage | images processed | GFLOP / image | CPU hours here "
              f"({threads}) | GPU hours (estimate) |\n|---|---|---|---|---|---|")
        for recipe, stage, units in plan:
            if "CRFs" in stage or "walk" in stage:
                seconds = direct["two CRFs" if "CRFs" in stage else "random walk"] * units
                print(f"| {recipe} | {stage} | {units:,} | - | {seconds / 3600 / args.threads:.1f}"
                      f" (measured per image; {args.threads} process(es)) | CPU-side |")
                continue
            total = gflop[stage] * units
            print(f"| {recipe} | {stage} | {units:,} | {gflop[stage]:.0f} | "
                  f"{total / rate[stage] / 3600:.1f} | {total / gpu / 3600:.2f} |")
        print()
    print(f"GPU hours assume {args.gpu_tflops:g} TFLOP/s peak at {args.utilisation:.0%} "
          "utilisation (AMP); data loading and the CPU-side stages are not in them.")


if __name__ == "__main__":
    main()
