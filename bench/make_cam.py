"""Benchmark make-cam (ResNet-50, scales 1.0/0.5/1.5/2.0 + flip, 500x375) against IRN's make_cam.

    .venv/bin/python bench/make_cam.py [--images 6] [--device cpu] [--memory] [--eval-images 100]
        [--backend torch|onnxruntime] [--profile]

One process, the same random weights, interleaved per image (official, csdseg, csdseg,
official, ...), each timed from the decoded uint8 image to the saved arrays (file I/O left out):

- ``official``: IRN's step/make_cam.py and its dataset (voc12/dataloader.py MSF), step for
  step, re-implemented below: per scale PIL bicubic rescale, TorchvisionNormalize (float64
  arithmetic stored as float32), HWC -> CHW, the image and its mirror stacked and collated
  into one contiguous batch; under ``torch.no_grad`` IRN's CAM forward (stages, classifier
  conv, ReLU, ``x[0] + x[1].flip(-1)``); all 20 class maps resized to stride 4 and to full
  size and summed over scales, then the present classes picked and max-normalised;
- ``csdseg``: what ``csdseg make-cam`` does (MultiScaleDataset's views, the network run by the
  engine ``--backend`` names, as ``cam.backend``: torch on channels-last tensors, or ONNX
  Runtime; ``multiscale_cam``: the present classes picked before resizing).

Every image's ``cam`` and ``high_res`` must agree within 1e-4. ``--memory`` also runs each
path alone in a subprocess for its peak RSS. Then eval-cam's images/s (bench/eval_cam.py).
"""
from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_cam import time_eval_cam  # noqa: E402
from side_by_side import (interleaved, load, machine, own_peak_gib, ratio_line,  # noqa: E402
                          spread)

SCALES = (1.0, 0.5, 1.5, 2.0)
SIZE = (375, 500)
TOLERANCE = 1e-4


def official_views(img: np.ndarray, scales=SCALES) -> list[torch.Tensor]:
    """voc12/dataloader.py VOC12ClassificationDatasetMSF.__getitem__ + the DataLoader's
    collate (``img[0]`` of each scale's [1, 2, 3, h, w] batch)."""
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    views = []
    for s in scales:
        if s == 1:
            s_img = img
        else:  # misc/imutils.pil_rescale(img, s, order=3)
            h, w = img.shape[:2]
            size = (int(np.round(h * s)), int(np.round(w * s)))
            s_img = np.asarray(Image.fromarray(img).resize(size[::-1], Image.BICUBIC))
        proc = np.empty_like(s_img, np.float32)  # TorchvisionNormalize
        for c in range(3):
            proc[..., c] = (s_img[..., c] / 255. - mean[c]) / std[c]
        proc = np.transpose(proc, (2, 0, 1))  # HWC_to_CHW
        views.append(torch.stack([torch.as_tensor(np.stack([proc, np.flip(proc, -1)], 0))])[0])
    return views


def official_make_cam(model: torch.nn.Module, views: list[torch.Tensor], size: tuple[int, int],
                      label: torch.Tensor, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """step/make_cam.py _work's body for one image (the device moves kept, saving left out)."""
    def cam_forward(x: torch.Tensor) -> torch.Tensor:  # net/resnet50_cam.py CAM.forward
        x = model.features(x)
        x = F.relu(F.conv2d(x, model.classifier.weight))
        return x[0] + x[1].flip(-1)

    with torch.no_grad():
        strided_size = ((size[0] - 1) // 4 + 1, (size[1] - 1) // 4 + 1)
        up = ((size[0] - 1) // 16 + 1, (size[1] - 1) // 16 + 1)
        strided_up_size = (up[0] * 16, up[1] * 16)
        outputs = [cam_forward(img.to(device, non_blocking=True)) for img in views]
        strided_cam = torch.sum(torch.stack(
            [F.interpolate(torch.unsqueeze(o, 0), strided_size, mode="bilinear",
                           align_corners=False)[0] for o in outputs]), 0)
        highres_cam = [F.interpolate(torch.unsqueeze(o, 1), strided_up_size, mode="bilinear",
                                     align_corners=False) for o in outputs]
        highres_cam = torch.sum(torch.stack(highres_cam, 0), 0)[:, 0, :size[0], :size[1]]
        valid_cat = torch.nonzero(label)[:, 0]
        strided_cam = strided_cam[valid_cat]
        strided_cam /= F.adaptive_max_pool2d(strided_cam, (1, 1)) + 1e-5
        highres_cam = highres_cam[valid_cat]
        highres_cam /= F.adaptive_max_pool2d(highres_cam, (1, 1)) + 1e-5
        return strided_cam.cpu().numpy(), highres_cam.cpu().numpy()


class MemorySource:
    """The part of a Source that MultiScaleDataset reads: one image and its label vector."""

    def __init__(self, images: list[np.ndarray], label: np.ndarray) -> None:
        self.images, self._label = images, label

    def load_image(self, image_id: str) -> np.ndarray:
        return self.images[int(image_id)]

    def label(self, image_id: str) -> np.ndarray:
        return self._label


def build(device: torch.device, n_images: int, scales=SCALES, backend: str = "torch",
          only: str | None = None):
    """(run_official, run_ours) with the same weights; ``only="official"`` / ``"csdseg"``
    builds that path alone (the other runner is None), so a --memory worker holds one path's
    model and engine, not both."""
    from csdseg.data.cam_dataset import MultiScaleDataset
    from csdseg.models import build_model
    from csdseg.ops.cam import multiscale_cam
    from csdseg.ops.cam_backend import cam_function

    torch.manual_seed(0)
    official = build_model("resnet50_cam", 20, "none").eval().to(device)
    # a --memory worker holds its own path's model alone (the same weights: the same seed);
    # a deep copy beside a deleted original left the freed copy in the peak (+0.1 GiB)
    ours = copy.deepcopy(official) if only is None else official if only == "csdseg" else None
    if only == "csdseg":
        del official
    if ours is not None and device.type == "cpu":  # as csdseg/stages/make_cam.py does
        ours.to(memory_format=torch.channels_last)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8) for _ in range(n_images + 1)]
    label = np.isin(np.arange(20), [3, 14]).astype(np.float32)
    dataset = MultiScaleDataset(MemorySource(images, label), [str(i) for i in range(len(images))],
                                list(scales), True)
    engine_s = [0.0]  # --profile: seconds spent inside the engine's forward
    if ours is not None:
        engine_fn, used = cam_function(ours, backend, device)
        if used != backend:
            raise SystemExit(f"--backend {backend} is not available here (see the warning above)")
        upsample, stride = ours.upsample, ours.feature_stride
        if only == "csdseg" and used != "torch":  # as csdseg/stages/make_cam.py does
            ours = None

        def cam_fn(x: torch.Tensor) -> torch.Tensor:
            start = time.perf_counter()
            out = engine_fn(x)
            engine_s[0] += time.perf_counter() - start
            return out

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def run_official(i: int):
        out = official_make_cam(official, official_views(images[i], scales), SIZE,
                                torch.from_numpy(label), device)
        sync()
        return out

    def run_ours(i: int):
        item = dataset[i]
        keys = torch.from_numpy(np.nonzero(item["label"].numpy())[0])
        low, high = multiscale_cam(cam_fn, item["views"], tuple(item["size"]), keys, device,
                                   "max", upsample, stride)
        sync()
        return low.numpy(), high.numpy()

    run_ours.engine_s, run_ours.views = engine_s, lambda i: dataset[i]["views"]
    run_ours.model = ours
    return (None if only == "csdseg" else run_official), (None if only == "official" else run_ours)


def profile(run_official, run_ours, n_images: int) -> None:
    """What bounds csdseg's path: the engine's share of each image, its arithmetic rate, and
    the ratio against the official path if everything but the engine took no time at all."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        for view in run_ours.views(0):
            run_ours.model(view.contiguous(memory_format=torch.channels_last))
    gflop = counter.get_total_flops() / 1e9
    totals, engines, refs = [], [], []
    for i in range(n_images):
        start = time.perf_counter()
        run_official(i)
        refs.append(time.perf_counter() - start)
        run_ours.engine_s[0] = 0.0
        start = time.perf_counter()
        run_ours(i)
        totals.append(time.perf_counter() - start)
        engines.append(run_ours.engine_s[0])
    med = lambda xs: float(np.median(xs))  # noqa: E731
    total, engine, ref = med(totals), med(engines), med(refs)
    print(f"\nprofile, {n_images} images (medians): official {ref:.2f} s; csdseg {total:.2f} s, "
          f"of which the engine's forward {engine:.2f} s ({100 * engine / total:.0f}%) for "
          f"{gflop:.0f} GFLOP ({gflop / engine:.0f} GFLOP/s), the rest {total - engine:.2f} s")
    print(f"bound: with the rest at zero, official / engine = {ref / engine:.2f}x")


def peak_of(path: str, n_images: int, device: str, backend: str) -> float:
    """GiB of peak RSS of a process that runs only ``path`` (warm-up + ``n_images``)."""
    out = subprocess.run([sys.executable, __file__, "--worker", path, "--images", str(n_images),
                          "--device", device, "--backend", backend], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_gib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory", action="store_true", help="peak RSS of each path alone")
    parser.add_argument("--memory-rounds", type=int, default=3,
                        help="fresh processes per path for --memory (the median is reported)")
    parser.add_argument("--eval-images", type=int, default=100, help="0 skips eval-cam")
    parser.add_argument("--scales", type=float, nargs="+", default=list(SCALES))
    parser.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"],
                        help="csdseg's engine (cam.backend)")
    parser.add_argument("--profile", action="store_true",
                        help="after the timing: the engine's share and rate, and the bound it sets")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.worker:  # one path alone, for its peak memory
        run_official, run_ours = build(device, args.images, args.scales, args.backend,
                                       only=args.worker)
        fn = run_official if args.worker == "official" else run_ours
        for i in range(args.images + 1):
            fn(i)
        peak = own_peak_gib()
        print(json.dumps({"peak_gib": peak}))
        return
    print(f"machine: {machine()}, device {device}")
    print(f"load at start: {load()}", flush=True)
    run_official, run_ours = build(device, args.images, args.scales, args.backend)
    worst = {"cam": 0.0, "high_res": 0.0}

    def close(ref, got) -> None:
        for name, a, b in zip(("cam", "high_res"), ref, got):
            worst[name] = max(worst[name], float(np.abs(a - b).max()))
            if a.shape != b.shape or worst[name] > TOLERANCE:
                raise AssertionError(f"{name}: csdseg differs from the official path by "
                                     f"{worst[name]:.2e} (shapes {a.shape}, {b.shape})")

    close(run_official(args.images), run_ours(args.images))  # warm-up: allocator, oneDNN
    ref, ours, ref_cpu, our_cpu = interleaved(lambda i: run_official(i), lambda i: run_ours(i),
                                              args.images, check=close)
    end = load()
    # peak RSS moves by ~0.1 GiB from one fresh process to the next (allocator, oneDNN's
    # scratch): one worker per path per round, alternating, and the median of the rounds
    peaks = {"official": [], "csdseg": []}
    for _ in range(args.memory_rounds if args.memory else 0):
        for p in peaks:
            peaks[p].append(peak_of(p, 2, args.device, args.backend))
    evaluation = time_eval_cam(args.eval_images) if args.eval_images else None
    print(f"\nmake-cam, {SIZE[1]}x{SIZE[0]}, scales {args.scales} + flip, ResNet-50 random "
          f"weights, {args.images} images, csdseg on {args.backend}; max |difference| cam {worst['cam']:.1e}, "
          f"high_res {worst['high_res']:.1e}")
    print(f"official: {spread(ref, digits=2)} per image; CPU {spread(ref_cpu, digits=2)}")
    print(f"csdseg  : {spread(ours, digits=2)} per image; CPU {spread(our_cpu, digits=2)}")
    for path, gibs in peaks.items():
        if gibs:
            print(f"peak RSS, {path} alone: {spread(gibs, 'GiB', digits=2)}")
    if evaluation:
        print(f"eval-cam: {evaluation['images_per_s']:.1f} images/s (500x375, 61 thresholds)")
    print(f"load at end: {end}")
    print("--- ratios")
    print(ratio_line("make-cam per image, wall", ref, ours))
    print(ratio_line("make-cam per image, CPU ", ref_cpu, our_cpu))
    if args.memory:
        rel = [c / o for o, c in zip(peaks["official"], peaks["csdseg"])]
        print(f"peak memory csdseg / official: {spread(rel, 'x', digits=2)} (per round)")
    if args.profile:  # the engine's timer does not synchronise a GPU: CPU only
        profile(run_official, run_ours, args.images) if device.type == "cpu" else \
            print("--profile: CPU only (the engine's timer does not synchronise a GPU)")


if __name__ == "__main__":
    main()
