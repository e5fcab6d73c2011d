"""Benchmark make-cam (ResNet-50, scales 1.0/0.5/1.5/2.0 + flip, 500x375) and eval-cam.

Each make-cam variant runs in its own process so that its peak memory is its own:
- ``irn_style``: what IRN's make_cam does (contiguous tensors, torch.no_grad, image and mirror
  as one batch per scale);
- ``csdseg``: what ``csdseg make-cam`` does (channels-last tensors, inference mode).
Then eval-cam's images/s over a folder of 500x375 CAMs and masks (61-threshold sweep).
Figures are printed last. Usage: python bench/make_cam.py [--images 6] [--device cpu]
"""
from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def time_make_cam(variant: str, n_images: int, device: str) -> dict:
    from csdseg.data.transforms import normalize, rescale
    from csdseg.models import build_model
    from csdseg.ops.cam import multiscale_cam

    dev = torch.device(device)
    torch.manual_seed(0)
    model = build_model("resnet50_cam", 20, "none").eval().to(dev)
    channels_last = variant == "csdseg"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (375, 500, 3), dtype=np.uint8) for _ in range(n_images + 1)]
    keys = torch.tensor([3, 14])

    def cam_fn(x: torch.Tensor) -> torch.Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return model.cam(x)

    times = []
    for i, img in enumerate(images):
        views = []
        for scale in (1.0, 0.5, 1.5, 2.0):
            x = normalize(rescale(img, scale))
            views.append(torch.from_numpy(np.ascontiguousarray(np.stack([x, x[:, :, ::-1]]))))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        if variant == "csdseg":
            multiscale_cam(cam_fn, views, (375, 500), keys, dev)
        else:
            with torch.no_grad():
                multiscale_cam.__wrapped__(cam_fn, views, (375, 500), keys, dev)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i > 0:  # the first image warms up the allocator and oneDNN kernels
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"variant": variant, "median_s": statistics.median(times), "peak_gib": peak}


def time_eval_cam(n_images: int) -> dict:
    from csdseg.evaluation import evaluate_cams, sweep_thresholds
    from csdseg.data.voc import VOCSource
    from csdseg.cam_file import save_cam
    from csdseg.visualize import palette_png

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "voc"
        for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation", "cam"):
            (root / sub).mkdir(parents=True)
        ids, labels = [f"img_{i:04d}" for i in range(n_images)], {}
        jpeg = io.BytesIO()
        Image.fromarray(np.zeros((375, 500, 3), np.uint8)).save(jpeg, format="JPEG")
        for image_id in ids:
            keys = np.sort(rng.choice(20, 2, replace=False))
            mask = np.zeros((375, 500), np.uint8)
            mask[100:250, 100:300], mask[200:350, 250:450] = keys[0] + 1, keys[1] + 1
            palette_png(mask).save(root / "SegmentationClass" / f"{image_id}.png")
            (root / "JPEGImages" / f"{image_id}.jpg").write_bytes(jpeg.getvalue())
            high = rng.random((2, 375, 500), dtype=np.float32)
            save_cam(root / "cam" / f"{image_id}.npy", keys, high[:, ::4, ::4], high)
            labels[image_id] = np.isin(np.arange(20), keys).astype(np.float32)
        (root / "ImageSets/Segmentation/bench.txt").write_text("\n".join(ids))
        np.save(root / "cls_labels.npy", labels)
        source = VOCSource(root, "bench")
        start = time.perf_counter()
        evaluate_cams(source, ids, root / "cam", 0.15, sweep_thresholds(0.0, 0.6, 0.01), progress=False)
        elapsed = time.perf_counter() - start
    return {"images_per_s": n_images / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eval-images", type=int, default=100)
    parser.add_argument("--skip-make-cam", action="store_true", help="only time eval-cam")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(time_make_cam(args.worker, args.images, args.device)))
        return
    results = {}
    for variant in () if args.skip_make_cam else ("irn_style", "csdseg"):
        out = subprocess.run([sys.executable, __file__, "--worker", variant, "--images",
                              str(args.images), "--device", args.device],
                             check=True, capture_output=True, text=True).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])
        print(json.dumps(results[variant]), flush=True)
    evaluation = time_eval_cam(args.eval_images)
    print(f"\nmachine: {torch.get_num_threads()} torch threads, device {args.device}")
    for r in results.values():
        print(f"make-cam {r['variant']:>9}: {r['median_s']:.2f} s/image (median of {args.images}), "
              f"peak {r['peak_gib']:.2f} GiB")
    print(f"eval-cam: {evaluation['images_per_s']:.1f} images/s (500x375, 61 thresholds)")
    if not results:
        return
    ratio = results["irn_style"]["median_s"] / results["csdseg"]["median_s"]
    print(f"speed-up csdseg vs irn_style: {ratio:.2f}x; vs the official IRN reference 3.41 s/image: "
          f"{3.41 / results['csdseg']['median_s']:.2f}x")


if __name__ == "__main__":
    main()
