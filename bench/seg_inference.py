"""Segmentation inference speed per 500x375 image: single scale vs 5 scales + flip.

DeepLab-v2 (ResNet-101, output stride 8) and the tiny CPU variant, random weights (speed does
not depend on them), fp32, ``torch.inference_mode``. Prints the figures and the MS+flip cost
ratio last. Usage: python bench/seg_inference.py [--device cpu] [--images 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from csdseg.models.deeplab import build_seg_model
from csdseg.ops.seg_inference import predict_probs

MS = (0.5, 0.75, 1.0, 1.25, 1.5)


def seconds_per_image(model: torch.nn.Module, device: torch.device, scales, flip: bool,
                      images: list[np.ndarray]) -> float:
    times = []
    with torch.inference_mode():
        predict_probs(model, images[0], device, scales, flip)  # warm-up
        for img in images:
            start = time.perf_counter()
            predict_probs(model, img, device, scales, flip)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["deeplabv2_tiny", "deeplabv2_resnet101"])
    args = parser.parse_args()
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (375, 500, 3), dtype=np.uint8) for _ in range(args.images)]
    rows = []
    for name in args.models:
        model = build_seg_model(name, 20, "none").eval().to(device)
        single = seconds_per_image(model, device, (1.0,), False, images)
        multi = seconds_per_image(model, device, MS, True, images)
        rows.append((name, single, multi))
    print(f"\ndevice {args.device}, {torch.get_num_threads()} threads, median of {args.images} images")
    for name, single, multi in rows:
        print(f"{name:>22}: single scale {single:.2f} s/image, 5 scales + flip {multi:.2f} s/image "
              f"(ratio {multi / single:.1f}x)")


if __name__ == "__main__":
    main()
