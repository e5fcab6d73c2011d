"""Benchmark: confident labels (two dense CRFs) per 500x375 image, inline vs the worker pool.

    .venv/bin/python bench/confident_labels.py [--images 16] [--workers 0]

Each synthetic image is a smooth colour field with two elliptical objects; its CAM is a
blurred, noisy version of the object masks, normalised to [0, 1] like make-cam's ``high_res``.
Prints seconds per image in one process, seconds per image with ``map_ids`` (wall time over
all images, pool start-up included), peak resident memory, and the speed-up ratio last.
IRN's reference is 2.28 s per image (one process). Timings depend on the load of the machine.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csdseg.ops.confident_labels import confident_labels  # noqa: E402
from csdseg.ops.parallel import map_ids, resolve_workers, usable_cpus  # noqa: E402

H, W = 375, 500
IRN_SECONDS_PER_IMAGE = 2.28


def _blur(x: np.ndarray, passes: int = 3, k: int = 15) -> np.ndarray:
    """Repeated box blur along both axes (close to a Gaussian, numpy only)."""
    kernel = np.ones(k, np.float32) / k
    for _ in range(passes):
        x = np.apply_along_axis(np.convolve, 0, x, kernel, mode="same")
        x = np.apply_along_axis(np.convolve, 1, x, kernel, mode="same")
    return x


def make_example(index: int) -> tuple[np.ndarray, dict]:
    """A smooth image uint8 [H, W, 3] and a plausible two-class CAM record for it."""
    rng = np.random.default_rng(index)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.zeros((H, W, 3), np.float32)
    for c in range(3):  # low-frequency background
        fy, fx, phase = rng.uniform(0.005, 0.02, 2).tolist() + [rng.uniform(0, 6.3)]
        img[..., c] = 110 + 60 * np.sin(fy * yy + fx * xx + phase)
    high = np.zeros((2, H, W), np.float32)
    for k in range(2):
        cy, cx = rng.uniform(0.25, 0.75) * H, rng.uniform(0.2, 0.8) * W
        ry, rx = rng.uniform(0.12, 0.3) * H, rng.uniform(0.1, 0.25) * W
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        img[inside] = rng.uniform(20, 235, 3)
        # CAMs peak on discriminative parts and blur past the boundary
        cam = _blur(inside.astype(np.float32) * rng.uniform(0.5, 1.0, (H, W)).astype(np.float32))
        high[k] = cam / max(float(cam.max()), 1e-5)
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    return img, {"keys": np.array([11, 14]), "high_res": high}


def time_one(image_id: str, crf_iters: int = 10) -> float:
    """Seconds of confident_labels on example ``image_id`` (input synthesis not counted)."""
    img, record = make_example(int(image_id))
    start = time.perf_counter()
    confident_labels(img, record, crf_iters=crf_iters)
    return time.perf_counter() - start


def peak_mib(who: int) -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(who).ru_maxrss * scale / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--workers", type=int, default=0, help="0 = one per CPU core")
    parser.add_argument("--crf-iters", type=int, default=10)
    args = parser.parse_args()
    ids = [str(i) for i in range(args.images)]
    workers = resolve_workers(args.workers, len(ids))
    fn = partial(time_one, crf_iters=args.crf_iters)

    load_before = os.getloadavg()[0]
    inline = [fn(i) for i in ids]
    inline_per_image = float(np.mean(inline))
    start = time.perf_counter()
    in_worker = map_ids(fn, ids, workers=workers, desc="pool")
    pool_per_image = (time.perf_counter() - start) / len(ids)
    load_after = os.getloadavg()[0]

    print(f"images: {len(ids)} x {W}x{H}, crf_iters {args.crf_iters}, usable cores {usable_cpus()}, "
          f"pool workers {workers}, 1-min load average {load_before:.2f} -> {load_after:.2f}")
    print(f"one process : {inline_per_image:.3f} s/image (min {min(inline):.3f}, "
          f"max {max(inline):.3f}); IRN reference {IRN_SECONDS_PER_IMAGE:.2f} s/image")
    print(f"worker pool : {pool_per_image:.3f} s/image (wall time / images, start-up included); "
          f"{float(np.mean(in_worker)):.3f} s per call inside a worker (> one process = CPU contention)")
    print(f"peak RSS    : main {peak_mib(resource.RUSAGE_SELF):.0f} MiB, "
          f"largest worker {peak_mib(resource.RUSAGE_CHILDREN):.0f} MiB")
    print(f"speed-up    : pool vs one process {inline_per_image / pool_per_image:.2f}x, "
          f"pool vs IRN reference {IRN_SECONDS_PER_IMAGE / pool_per_image:.2f}x")


if __name__ == "__main__":
    main()
