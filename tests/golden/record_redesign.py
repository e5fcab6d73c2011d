"""The tiny pipeline's outputs before and after the architecture redesign (issue 13).

Run with the code of any commit on ``PYTHONPATH`` (it calls only ``csdseg.cli.main``, which every
version has, and reads the files with NumPy and PIL), so the same script records the outputs
of the last commit before the redesign and tests/test_redesign_outputs.py recomputes them with
today's code:

    git worktree add /tmp/pre e400652        # the commit before the redesign's first change
    PYTHONPATH=/tmp/pre OMP_NUM_THREADS=1 python tests/golden/record_redesign.py \\
        --data /tmp/syn --runs /tmp/runs --out tests/golden/redesign.npz

``--compare tests/golden/redesign.npz`` instead of ``--out`` prints how far today's outputs are
from the recording on this machine (docs/reliability.md, "How far 'another CPU' reaches").

The config is the synthetic IRN preset as it was at e400652, with its setting names of that
time (today's code reads them under the new names, with a warning), shrunk to a few steps:
train-cam -> make-cam -> make-ir-label -> train-irn -> make-sem-seg -> train-seg -> eval-seg's
predictions. The data is made by the caller (the test: today's generator, the recording: the
same folder).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

CONFIG = """\
name: redesign
device: cpu
seed: 0
data: {dataset: voc, train_split: train, infer_split: train, eval_split: train, num_workers: 0}
model: {name: resnet10t_cam, pretrained: none, detach_after: 0, frozen_bn: false}
optim: {lr: 0.1, momentum: 0.9}
train: {epochs: 1, batch_size: 8, crop_size: 64, resize_long: [48, 80], max_steps: 4}
cam: {scales: [1.0, 0.5]}
ir_label: {workers: 1}
irn: {backbone: resnet10t, pretrained: none, backbone_from_cam: true, batch_size: 8,
      crop_size: 80, epochs: 1, lr: 0.1, exp_times: 2, max_steps: 4}
seg: {model: deeplabv2_tiny, pretrained: none, freeze_bn: false, batch_size: 8, crop_size: 64,
      epochs: 1, lr: 0.001, scales: [1.0], eval_split: val, max_steps: 4, val_every: 0}
"""
STAGES = ["train-cam", "make-cam", "make-ir-label", "train-irn", "make-sem-seg", "train-seg"]


def run_pipeline(data: Path, runs: Path) -> Path:
    """Every stage of the tiny pipeline; returns the run folder."""
    import torch

    from csdseg.cli import main

    torch.set_num_threads(1)
    runs.mkdir(parents=True, exist_ok=True)
    config = runs / "redesign.yaml"
    config.write_text(CONFIG)
    common = ["-c", str(config), f"data.root={data}", f"run_root={runs}"]
    for stage in STAGES:
        if main([stage, *common]) != 0:
            raise RuntimeError(f"{stage} failed")
    if main(["eval-seg", *common, "--split", "train", "--save-png"]) != 0:
        raise RuntimeError("eval-seg failed")
    return runs / "redesign"


def collect(run: Path) -> dict[str, np.ndarray]:
    """The outputs as arrays: each image's CAMs (keys, cam, high_res), confident labels,
    pseudo-mask and DeepLab prediction."""
    out: dict[str, np.ndarray] = {}
    for path in sorted((run / "cam").glob("*.npy")):
        record = np.load(path, allow_pickle=True).item()
        image_id = path.stem
        for key in ("keys", "cam", "high_res"):
            value = record[key]
            out[f"{key}/{image_id}"] = np.asarray(value.numpy() if hasattr(value, "numpy")
                                                  else value)
        for folder in ("ir_label", "sem_seg", "seg_pred"):
            with Image.open(run / folder / f"{image_id}.png") as image:
                out[f"{folder}/{image_id}"] = np.asarray(image)
    return out


def drift(want: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per kind of output: the largest difference over its images (CAMs: max |a - b|; label
    maps: the share of pixels that differ) and how many images differ at all."""
    out: dict[str, dict] = {}
    for key in want:
        kind = key.split("/")[0]
        a, b = want[key], got[key]
        value = (float(np.abs(a - b).max()) if kind in ("cam", "high_res")
                 else float((a != b).mean()))
        row = out.setdefault(kind, {"max": 0.0, "images_differing": 0, "images": 0})
        row["max"] = max(row["max"], value)
        row["images_differing"] += value > 0
        row["images"] += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a synthetic dataset folder")
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--out", type=Path, help="record the outputs here (.npz)")
    parser.add_argument("--compare", type=Path,
                        help="instead, print how far the outputs are from this recording")
    parser.add_argument("--make-data", action="store_true",
                        help="generate the tests' dataset (32 + 8 images at 64 px, seed 0) first")
    args = parser.parse_args()
    if args.make_data:
        from csdseg.data.synthetic import generate

        generate(args.data, n_train=32, n_val=8, size=64, seed=0, workers=1)
    if (args.out is None) == (args.compare is None):
        parser.error("give one of --out (record) and --compare (measure the drift)")
    arrays = collect(run_pipeline(args.data, args.runs))
    if args.compare:
        import torch

        with np.load(args.compare) as want:
            report = drift({k: want[k] for k in want.files}, arrays)
        print(f"kernels {torch.backends.cpu.get_cpu_capability()}: {report}")
        return
    np.savez_compressed(args.out, **arrays)
    print(f"{len(arrays)} arrays -> {args.out}")


if __name__ == "__main__":
    main()
