"""MCTformer-V2 (DeiT-S) on the CPU: training-step time and map-generation time.

Training step: batch 8 x 224, 20 classes, fp32, forward + backward + AdamW step, with fused
attention and no maps, explicit attention, and fused attention plus the maps CSD needs.
Maps: one 500 x 375 image, scale 1.0 + flip, patch-attention refinement (make-cam's path).
Reference (the official code on this kind of 2-core machine): 1.10 s per training step,
0.63 s per image for the maps. Usage: python bench/mctformer.py [--reps 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from csdseg.models.mctformer import mctformer_v2


def median_time(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 224, 224), (torch.rand(8, 20) > 0.8).float()
    rows = []
    for label, fused, maps in (("fused, no maps", True, False), ("explicit attention", False, False),
                               ("fused + maps (CSD)", True, True)):
        model = mctformer_v2(20, pretrained="none", fused_attn=fused).train()
        opt = torch.optim.AdamW(model.param_groups(6.25e-5, 0.05, 1.0))

        def step() -> None:
            out = model(x, maps=maps)
            loss = model.classification_loss(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        rows.append((label, median_time(step, args.reps)))
    model = mctformer_v2(20, pretrained="none").eval()
    img = torch.randn(1, 3, 375, 500)
    views = torch.cat([img, img.flip(-1)])
    with torch.inference_mode():
        map_time = median_time(lambda: model.attention_maps(views, refine=True), args.reps)
    print(f"\n{torch.get_num_threads()} torch threads, median of {args.reps}")
    for label, t in rows:
        print(f"train step, batch 8 x 224, {label:>20}: {t:.2f} s (official 1.10 s: {1.10 / t:.2f}x)")
    print(f"maps, 500 x 375, scale 1.0 + flip + refinement: {map_time:.2f} s/image "
          f"(official 0.63 s: {0.63 / map_time:.2f}x)")


if __name__ == "__main__":
    main()
