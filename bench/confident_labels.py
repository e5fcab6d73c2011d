"""Benchmark: confident labels per 500x375 image, csdseg against IRN's cam_to_ir_label, side by side.

    .venv/bin/python bench/confident_labels.py [--images 12] [--pool-images 16]

Each synthetic image is a smooth colour field with two elliptical objects; its CAM is a
blurred, noisy version of the object masks, normalised to [0, 1] like make-cam's ``high_res``.

1. One process, interleaved per image: the official path (IRN's step/cam_to_ir_label.py as it
   runs, re-implemented step for step below: a padded argmax per threshold, two independent
   dense CRFs as misc/imutils.crf_inference_label builds them, then the combination) and
   csdseg's ``confident_labels``; every image's two label maps must be identical.
2. Worker pools: wall time per image over ``--pool-images`` images with 1 process and with 2
   (``map_ids``, spawn start-up included; each image and CAM read from an .npz file, as the
   stage reads its inputs), both paths, so the scaling shows. IRN's default on
   this machine is ``--num_workers = cpu_count() // 2``; csdseg's ``ir_label.num_workers=0`` is
   one process per usable core.
Prints the machine and the load at the start and the end; ratios last.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from side_by_side import interleaved, load, machine, ratio_line, spread  # noqa: E402

from csdseg.ops.confident_labels import confident_labels  # noqa: E402
from csdseg.ops.parallel import map_ids, usable_cpus  # noqa: E402

H, W = 375, 500


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


def irn_crf_inference_label(img: np.ndarray, labels: np.ndarray, n_labels: int, t: int = 10,
                            gt_prob: float = 0.7) -> np.ndarray:
    """IRN's misc/imutils.crf_inference_label: a CRF of its own for every call."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_labels

    h, w = img.shape[:2]
    d = dcrf.DenseCRF2D(w, h, n_labels)
    d.setUnaryEnergy(unary_from_labels(labels, n_labels, gt_prob=gt_prob, zero_unsure=False))
    d.addPairwiseGaussian(sxy=3, compat=3)
    d.addPairwiseBilateral(sxy=50, srgb=5, rgbim=np.ascontiguousarray(np.copy(img)), compat=10)
    q = d.inference(t)
    return np.argmax(np.array(q).reshape((n_labels, h, w)), axis=0)


def irn_confident_labels(img: np.ndarray, cam_dict: dict, fg_thres: float = 0.30,
                         bg_thres: float = 0.05) -> np.ndarray:
    """The body of IRN's step/cam_to_ir_label._work for one image (file I/O left out)."""
    cams = cam_dict["high_res"]
    keys = np.pad(cam_dict["keys"] + 1, (1, 0), mode="constant")
    fg_conf_cam = np.pad(cams, ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=fg_thres)
    fg_conf_cam = np.argmax(fg_conf_cam, axis=0)
    fg_conf = keys[irn_crf_inference_label(img, fg_conf_cam, n_labels=keys.shape[0])]
    bg_conf_cam = np.pad(cams, ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=bg_thres)
    bg_conf_cam = np.argmax(bg_conf_cam, axis=0)
    bg_conf = keys[irn_crf_inference_label(img, bg_conf_cam, n_labels=keys.shape[0])]
    conf = fg_conf.copy()
    conf[fg_conf == 0] = 255
    conf[bg_conf + fg_conf == 0] = 0
    return conf.astype(np.uint8)


PATHS = {"official": irn_confident_labels, "csdseg": confident_labels}


class Job:
    """One image's work on one path, picklable for the pool: reads the image and its CAM
    record from ``folder`` (as the stage reads its files), so no worker synthesises input."""

    def __init__(self, path: str, folder: str) -> None:
        self.path, self.folder = path, folder

    def __call__(self, image_id: str) -> np.ndarray:
        with np.load(Path(self.folder) / f"{image_id}.npz") as f:
            img, record = f["img"], {"keys": f["keys"], "high_res": f["high_res"]}
        return PATHS[self.path](img, record)


def pool_seconds(path: str, ids: list[str], workers: int, folder: str) -> float:
    """Wall seconds per image of ``map_ids`` over ``ids`` (pool start-up included)."""
    start = time.perf_counter()
    map_ids(Job(path, folder), ids, workers=workers, desc=f"{path} x{workers}")
    return (time.perf_counter() - start) / len(ids)


def peak_mib(who: int) -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(who).ru_maxrss * scale / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12, help="interleaved rounds, one process")
    parser.add_argument("--pool-images", type=int, default=16, help="images per pool run; 0 skips")
    args = parser.parse_args()
    print(f"machine: {machine(torch_threads=False)}")
    print(f"load at start: {load()}", flush=True)
    examples = [make_example(i) for i in range(args.images)]

    def same(a: np.ndarray, b: np.ndarray) -> None:
        if not np.array_equal(a, b):
            raise AssertionError("csdseg's confident labels differ from the official path's")

    ref, ours, ref_cpu, our_cpu = interleaved(lambda i: irn_confident_labels(*examples[i]),
                                              lambda i: confident_labels(*examples[i]),
                                              args.images, check=same)
    if not ref:  # --images 0: only the pools
        ref = ours = ref_cpu = our_cpu = [float("nan")]
    pools = {}
    if args.pool_images:
        ids = [str(i) for i in range(args.pool_images)]
        with tempfile.TemporaryDirectory() as folder:
            for i in ids:
                img, record = make_example(int(i))
                np.savez(Path(folder) / f"{i}.npz", img=img, **record)
            for workers in (1, 2):
                order = ("official", "csdseg") if workers == 1 else ("csdseg", "official")
                for path in order:
                    pools[path, workers] = pool_seconds(path, ids, workers, folder)
    end = load()
    print(f"\nimages: {args.images} x {W}x{H}, two classes each, 10 CRF iterations; "
          f"identical labels on all {args.images}")
    print(f"one process, official: {spread(ref)} per image; CPU {spread(ref_cpu)}")
    print(f"one process, csdseg  : {spread(ours)} per image; CPU {spread(our_cpu)}")
    for (path, workers), sec in sorted(pools.items()):
        print(f"pool {path:>8} x {workers} process{'es' if workers > 1 else ''}: {sec:.3f} s per "
              f"image (wall / {args.pool_images} images)")
    print(f"peak RSS: main {peak_mib(resource.RUSAGE_SELF):.0f} MiB, largest worker "
          f"{peak_mib(resource.RUSAGE_CHILDREN):.0f} MiB; usable cores {usable_cpus()}")
    print(f"load at start / end: see above / {end}")
    print("--- ratios")
    print(ratio_line("confident labels, one process, wall", ref, ours))
    print(ratio_line("confident labels, one process, CPU ", ref_cpu, our_cpu))
    if pools:
        for path in ("official", "csdseg"):
            print(f"pool scaling {path}: 1 -> 2 processes "
                  f"{pools[path, 1] / pools[path, 2]:.2f}x")
        print(f"2 processes each: {pools['official', 2] / pools['csdseg', 2]:.2f}x; csdseg 2 "
              f"processes (ir_label.num_workers=0 here) vs IRN's default 1 (cpu_count // 2): "
              f"{pools['official', 1] / pools['csdseg', 2]:.2f}x")
    print(f"median seconds per image: official {statistics.median(ref):.3f}, "
          f"csdseg {statistics.median(ours):.3f}")


if __name__ == "__main__":
    main()
