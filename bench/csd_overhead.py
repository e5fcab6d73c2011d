"""CSD's cost: train-step time of CSD vs. the baseline, and sample construction throughput.

Run: ``.venv/bin/python bench/csd_overhead.py [--quick]``. Everything is synthetic and in memory
(no dataset, no weights). The step compares, on the same all-multi-label batch of B images,
one baseline step (forward + backward of X_m) with one CSD step (student forward + backward of
[X_m; X_sm_fg; X_sm_bg] = 3B images, plus a no-grad teacher pass on B images): the compute
floor is about (3 * 3 + 1) / 3 = 3.33x when backward costs twice the forward. Targets: step
ratio <= 3.4x, construction >= 100 samples/s per worker at crop 512.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from csdseg.config import CsdConfig
from csdseg.csd.cooccurrence import CooccurrenceSampler
from csdseg.csd.dataset import CSDDataset, csd_collate
from csdseg.csd.trainer import CSDStep
from csdseg.data.augment import ResizeLongCrop
from csdseg.data.cam_dataset import ClassificationDataset
from csdseg.data.source import Source
from csdseg.models import build_model

K = 20


class MemorySource(Source):
    """n synthetic 500x375 images (VOC-sized) with confident label maps, half multi-label."""

    def __init__(self, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.class_names = [f"c{k}" for k in range(K)]
        self.ids = [f"im{i}" for i in range(n)]
        self.labels = np.zeros((n, K), np.float32)
        self.images, self.masks = {}, {}
        for i, image_id in enumerate(self.ids):
            classes = rng.choice(K, size=1 + (i % 2) * int(rng.integers(1, 3)), replace=False)
            self.labels[i, classes] = 1
            self.images[image_id] = rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)
            mask = np.zeros((375, 500), np.uint8)
            for n_c, c in enumerate(classes):
                y, x = 40 + 90 * n_c, 60 + 120 * n_c
                mask[y - 8:y + 168, x - 8:x + 208] = 255
                mask[y:y + 160, x:x + 200] = c + 1
            self.masks[image_id] = mask

    def load_image(self, image_id: str) -> np.ndarray:
        return self.images[image_id]

    def load(self, image_id: str) -> np.ndarray:  # the MaskStore interface
        return self.masks[image_id]

    def path(self, image_id: str) -> str:
        return image_id


def build_dataset(source: MemorySource, crop: int, resize_long: tuple[int, int]):
    base = ClassificationDataset(source, ResizeLongCrop(crop, resize_long, True), seed=0)
    sampler = CooccurrenceSampler(source.labels, np.ones(len(source), bool), 0.1)
    return base, CSDDataset(base, source, sampler)


def multi_batch(data: CSDDataset, B: int) -> dict:
    multi = [i for i in range(len(data)) if data.source.labels[i].sum() > 1][:B]
    return csd_collate([data[(0, i)] for i in multi])


def time_steps(model_name: str, B: int, crop: int, reps: int) -> tuple[float, float]:
    torch.manual_seed(0)
    source = MemorySource(4 * B)
    _, data = build_dataset(source, crop, (crop, crop))
    batch = multi_batch(data, B)
    model = build_model(model_name, K).train()
    step = CSDStep(CsdConfig(enabled=True))

    def baseline() -> None:
        out = model(batch["img"])
        model.classification_loss(out, batch["label"]).backward()

    def csd() -> None:
        step(model, batch)[0].backward()

    times = {}
    for name, fn in (("baseline", baseline), ("csd", csd)):
        fn()  # warm-up
        runs = []
        for _ in range(reps):
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        times[name] = statistics.median(runs)
    return times["baseline"], times["csd"]


def construction_rate(crop: int, n: int) -> tuple[float, float]:
    torch.set_num_threads(1)  # a data-loader worker is one process on one core
    source = MemorySource(64)
    base, data = build_dataset(source, crop, (320, 640))
    multi = [i for i in range(len(source)) if source.labels[i].sum() > 1]
    rates = []
    for fn in (lambda i: base[(0, i)], lambda i: data[(0, i)]):
        fn(multi[0])
        t0 = time.perf_counter()
        for k in range(n):
            fn(multi[k % len(multi)])
        rates.append(n / (time.perf_counter() - t0))
    torch.set_num_threads(os.cpu_count() or 1)
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the tiny model, fewer samples")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()}  cores: {os.cpu_count()}  torch threads: "
          f"{torch.get_num_threads()}")
    configs = [("resnet10t_cam", 4, 128, 3)]
    if not args.quick:
        configs.append(("resnet50_cam", 2, 256, 2))
    ratios = []
    for name, B, crop, reps in configs:
        t_base, t_csd = time_steps(name, B, crop, reps)
        ratios.append((name, B, crop, t_csd / t_base))
        print(f"{name} B={B} crop={crop}: baseline {t_base:.3f} s/step, CSD {t_csd:.3f} s/step "
              f"-> model consumes {B / t_csd:.1f} CSD samples/s")
    base_rate, csd_rate = construction_rate(512, 20 if args.quick else 60)
    print(f"construction at crop 512, one worker: baseline {base_rate:.1f} samples/s, "
          f"CSD {csd_rate:.1f} samples/s (target >= 100)")
    print("--- ratios")
    for name, B, crop, ratio in ratios:
        print(f"step time CSD / baseline, {name} B={B} crop={crop}: {ratio:.2f}x "
              "(target <= 3.4x, floor ~3.33x)")
    print(f"construction rate CSD / baseline: {csd_rate / base_rate:.2f} "
          f"(CSD {csd_rate:.1f} samples/s per worker)")


if __name__ == "__main__":
    main()
