"""CSD's cost: train-step time of CSD vs. the baseline, and sample construction throughput.

Run: ``.venv/bin/python bench/csd_overhead.py [--quick]``. Everything is synthetic and in memory
(no dataset, no weights). The step compares, on the same all-multi-label batch of B images,
one baseline step (forward + backward of X_m) with one CSD step (student forward + backward of
[X_m; X_sm_fg; X_sm_bg] = 3B images, plus a no-grad teacher pass on B images): the compute
floor is about (3 * 3 + 1) / 3 = 3.33x when backward costs twice the forward. Targets: step
ratio <= 3.4x, construction >= 100 samples/s per worker at crop 512.

Construction has no official fast path, so its reference is the plain per-sample construction
(``plain_sample``: IRN's recipe normalising the whole resized image before the crop, the masks
by their definitions, X_sm = M * X_s + (1 - M) * X_m), timed in the same process, interleaved
round by round with csdseg's ``CSDDataset`` on the same keys; every sample must be identical.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from side_by_side import interleaved, load, machine, ratio_line, spread  # noqa: E402

from csdseg.config import CsdConfig  # noqa: E402
from csdseg.csd.cooccurrence import CooccurrenceSampler  # noqa: E402
from csdseg.csd.dataset import CSD_STREAM, CSDDataset, csd_collate  # noqa: E402
from csdseg.csd.trainer import CSDStep  # noqa: E402
from csdseg.data.augment import ResizeLongCrop  # noqa: E402
from csdseg.data.cam_dataset import ClassificationDataset  # noqa: E402
from csdseg.data.source import Source  # noqa: E402
from csdseg.data.transforms import (normalize, random_crop, random_hflip,  # noqa: E402
                                    random_resize_long, sample_rng)
from csdseg.models import build_model  # noqa: E402

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


def plain_sample(data: CSDDataset, epoch: int, index: int) -> dict:
    """One CSD sample, constructed the plain way (the unoptimised reference)."""
    aug = data.base.augment

    def augment(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
        img, (mask,) = random_resize_long(img, *aug.resize_long, rng, (mask,))
        if aug.hflip:
            img, (mask,) = random_hflip(img, rng, (mask,))
        x, lab = random_crop([normalize(img), mask], aug.crop_size, [0.0, 255], rng)
        return x, lab

    def load_pair(i: int):
        image_id = data.source.ids[i]
        return data.source.load_image(image_id), data.masks.load(image_id)

    x_m, lab_m = augment(*load_pair(index), sample_rng(data.base.seed, epoch, index))
    out = {"img": x_m, "csd": None}
    rng = np.random.default_rng([data.base.seed, epoch, index, CSD_STREAM])
    drawn = data.draw(index, rng)
    if drawn:
        c, j = drawn
        x_s, lab_s = augment(*load_pair(j), rng)
        m_fg = ((lab_s >= 1) & (lab_s <= 254)).astype(np.float32)
        b = (1 - m_fg) * (lab_m == 0)
        out["csd"] = {"x_s": x_s, "x_fg": m_fg * x_s + (1 - m_fg) * x_m,
                      "x_bg": b * x_s + (1 - b) * x_m, "m_fg": m_fg > 0, "m_bg": b > 0}
    return out


def same_samples(ref: list[dict], ours: list[dict]) -> None:
    for r, o in zip(ref, ours):
        if not np.array_equal(r["img"], o["img"].numpy()):
            raise AssertionError("X_m differs from the plain construction")
        for k, v in (r["csd"] or {}).items():
            if not np.array_equal(v, o["csd"][k].numpy()):
                raise AssertionError(f"{k} differs from the plain construction")


def construction(crop: int, rounds: int, per_round: int) -> tuple:
    """Samples/s per round of the plain construction and of CSDDataset (one process, one
    thread: a data-loader worker), per wall second and per CPU second, and the baseline's
    X_m-only rate per CPU second: (plain wall, ours wall, plain CPU, ours CPU, baseline)."""
    torch.set_num_threads(1)  # a data-loader worker is one process on one core
    source = MemorySource(64)
    base, data = build_dataset(source, crop, (320, 640))
    multi = [i for i in range(len(source)) if source.labels[i].sum() > 1]
    keys = [[(r, multi[(r * per_round + k) % len(multi)]) for k in range(per_round)]
            for r in range(rounds)]
    plain_sample(data, 0, multi[0]), data[(0, multi[0])]  # warm-up
    timed = interleaved(lambda r: [plain_sample(data, *key) for key in keys[r]],
                        lambda r: [data[key] for key in keys[r]], rounds, check=same_samples)
    t0 = time.process_time()
    for key in keys[0]:
        base[key]
    base_rate = per_round / (time.process_time() - t0)
    torch.set_num_threads(os.cpu_count() or 1)
    return tuple([per_round / t for t in times] for times in timed) + (base_rate,)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the tiny model, fewer samples")
    parser.add_argument("--construction-only", action="store_true", help="skip the step times")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved construction rounds")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"load at start: {load()}", flush=True)
    configs = [] if args.construction_only else [("resnet10t_cam", 4, 128, 3)]
    if not args.quick and not args.construction_only:
        configs.append(("resnet50_cam", 2, 256, 2))
    ratios = []
    for name, B, crop, reps in configs:
        t_base, t_csd = time_steps(name, B, crop, reps)
        ratios.append((name, B, crop, t_csd / t_base))
        print(f"{name} B={B} crop={crop}: baseline {t_base:.3f} s/step, CSD {t_csd:.3f} s/step "
              f"-> model consumes {B / t_csd:.1f} CSD samples/s")
    plain, ours, plain_cpu, ours_cpu, base_rate = construction(
        512, 3 if args.quick else args.rounds, 8 if args.quick else 24)
    for what, rates in (("plain, per wall s", plain), ("csdseg, per wall s", ours),
                        ("plain, per CPU s", plain_cpu), ("csdseg, per CPU s", ours_cpu)):
        print(f"construction at crop 512, one worker, {what}: {spread(rates, 'samples/s', 1)}")
    print(f"identical samples; target >= 100 samples/s per worker; baseline X_m alone (no CSD "
          f"views): {base_rate:.1f} samples per CPU s")
    print(f"load at end: {load()}")
    print("--- ratios")
    for name, B, crop, ratio in ratios:
        print(f"step time CSD / baseline, {name} B={B} crop={crop}: {ratio:.2f}x "
              "(target <= 3.4x, floor ~3.33x)")
    print(ratio_line("CSD construction, wall", [1 / r for r in plain], [1 / r for r in ours],
                     "the plain construction"))
    print(ratio_line("CSD construction, CPU ", [1 / r for r in plain_cpu],
                     [1 / r for r in ours_cpu], "the plain construction"))
    print(f"CSD construction: {statistics.median(ours):.1f} samples per wall s, "
          f"{statistics.median(ours_cpu):.1f} per CPU s per worker (medians); "
          f"{statistics.median(ours_cpu) / base_rate:.2f} of the baseline's X_m-only rate")


if __name__ == "__main__":
    main()
