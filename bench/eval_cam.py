"""Benchmark eval-cam: images/s scoring CAM files at 61 background thresholds (no reference).

    .venv/bin/python bench/eval_cam.py [--images 100]

Synthetic 500x375 images with two classes each and random CAMs, in a temporary VOC-layout
folder; the time is that of one ``evaluate_cams`` call over them. bench/make_cam.py reports the
same figure after its own.
"""
from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def time_eval_cam(n_images: int) -> dict:
    from csdseg.evaluation import evaluate_cams, sweep_thresholds
    from csdseg.data.voc import VOCSource
    from csdseg.files.cam import save_cam
    from csdseg.report.visualize import palette_png

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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    args = parser.parse_args()
    rate = time_eval_cam(args.images)["images_per_s"]
    print(f"eval-cam: {rate:.1f} images/s (500x375, 61 thresholds)")


if __name__ == "__main__":
    main()
