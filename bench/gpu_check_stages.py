"""gpu_check section 1: every stage on the device, the tiny pipeline end to end, then torchrun.

The demo's pipeline (csdseg/stages/demo.py's overrides, shrunk to one epoch on 64 px images)
runs in this process for IRN (random walk) and MCTformer (PSA's walk, so train-aff runs too),
each as baseline, control and CSD, with ``device=<dev>``; on CUDA the presets' ``train.amp`` /
``seg.amp`` switch AMP on. After each pipeline the CUDA memory still allocated is checked:
stages of one process must not leave their models on the GPU. Then train-cam of each CSD run
is rerun under ``torchrun --nproc_per_node=1`` (NCCL on CUDA, gloo on the CPU; one process
joins the group and trains through DDP, csdseg.engine.dist) and its losses must match the
single-process run's.
"""
from __future__ import annotations

import argparse
import gc
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from gpu_check_report import Row, Section, check

from csdseg.engine.logger import read_log
from csdseg.runs import RunDir
from csdseg.stages.demo import PRESETS, demo_overrides

SECTION = "stages"
LEFTOVER_MB = 64.0  # CUDA memory a finished pipeline may still hold (cuBLAS/cuDNN workspaces)
# the torchrun rerun against the in-process run: the same seed and data order, so only
# float reordering separates them (and cuDNN's non-deterministic kernels on CUDA)
DDP_RTOL = {"cpu": 1e-4, "cuda": 2e-2}


def overrides(baseline: str, root: Path, run_root: Path, device: str,
              extra: list[str]) -> list[str]:
    """The demo's overrides at one epoch on 64 px, plus what makes every stage run fast."""
    args = argparse.Namespace(size=64, run_root=str(run_root), seed=0, epochs=1, irn_epochs=1,
                              seg_epochs=1, overrides=[])
    over = demo_overrides(args, baseline, root) + [
        f"device={device}", "data.num_workers=0", "seg.num_workers=0", "train.batch_size=8",
        "train.log_every=1", "ir_label.num_workers=1", "irn.path_radius=4",
        "refine.exp_times=4", "seg.batch_size=8"]
    if baseline == "mct":  # PSA's walk, so train-aff and the psa refiner run on the device too
        over += ["refine.method=psa", "psa.network=affinitynet_tiny", "psa.crop_size=72",
                 "psa.batch_size=4", "psa.epochs=1", "psa.walk=mct"]
    return over + extra


def finite_table(table: list[dict]) -> bool:
    """Every number of the baseline / control / CSD table is finite (None: not measured)."""
    values = [r.get(col) for r in table for col in ("baseline", "control", "csd")]
    return all(v is None or (isinstance(v, (int, float)) and math.isfinite(v)) for v in values)


def pipeline_rows(baseline: str, root: Path, run_root: Path, device: torch.device,
                  extra: list[str]) -> list[Row]:
    from csdseg.stages.pipeline import run_pipeline

    out = run_pipeline(PRESETS[baseline], overrides(baseline, root, run_root, str(device), extra),
                       baseline_and_csd=True, csd_epochs=1, report=False)
    not_run = [f"{r['run']}:{r['stage']}" for r in out["steps"]
               if r["status"] not in ("ran", "not needed")]
    ran = sum(r["status"] == "ran" for r in out["steps"])
    rows = [Row(SECTION, f"{baseline} pipeline: stages ran", ran, "stages", ok=not not_run,
                note="all of baseline, control, CSD" if not not_run else
                f"not run: {', '.join(not_run[:4])}"),
            Row(SECTION, f"{baseline} pipeline: table finite", ok=finite_table(out["table"]))]
    if device.type == "cuda":
        gc.collect()
        left = torch.cuda.memory_allocated(device) / 2 ** 20
        rows.append(check(SECTION, f"{baseline} pipeline: CUDA memory left allocated", left,
                          LEFTOVER_MB, "MiB", "models released between stages"))
        torch.cuda.empty_cache()
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_rows(baseline: str, root: Path, run_root: Path, device: torch.device,
                  extra: list[str], timeout: float) -> list[Row]:
    """train-cam of ``<name>_csd`` again, as ``<name>_csd_ddp`` under torchrun, one process."""
    from csdseg.stages.pipeline import csd_config

    over = overrides(baseline, root, run_root, str(device), extra)
    csd = csd_config(PRESETS[baseline], over, epochs=1)
    name = f"{csd.name}_ddp"
    args = [*over, f"name={name}", f"csd.from_run={csd.csd.from_run}", "csd.enabled=true",
            f"train.init_from={csd.train.init_from}", f"train.epochs={csd.train.epochs}",
            f"optim.lr={csd.optim.lr}", f"csd.mask_source={RunDir.from_config(csd).csd_mask_dir}"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", "-m", "csdseg",
           "train-cam", "-c", PRESETS[baseline], *args]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                       os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    backend = "nccl" if device.type == "cuda" else "gloo"
    item = f"{baseline} CSD train-cam under torchrun ({backend}, DDP)"
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        sys.stderr.write(done.stderr[-4000:])
        return [Row(SECTION, item, ok=False, note=f"exit {done.returncode}: {tail[0][:300]}")]
    ours = [r["loss"] for r in read_log(RunDir(run_root / name).log("train_cam"), "step")]
    ref = [r["loss"] for r in read_log(RunDir.from_config(csd).log("train_cam"), "step")]
    if not ours or len(ours) != len(ref):
        return [Row(SECTION, item, ok=False, note=f"{len(ours)} logged steps, in-process "
                    f"run {len(ref)}")]
    worst = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(ours, ref))
    return [check(SECTION, item, worst, DDP_RTOL[device.type], "rel. loss diff",
                  f"{len(ours)} steps against the in-process CSD run")]


def run(section: Section, root: Path, run_root: Path, device: torch.device,
        extra: list[str]) -> None:
    for baseline in PRESETS:
        section.run(f"{baseline} pipeline",
                    lambda b=baseline: pipeline_rows(b, root, run_root, device, extra))
    for baseline in PRESETS:
        section.run(f"{baseline} torchrun",
                    lambda b=baseline: torchrun_rows(b, root, run_root, device, extra,
                                                     max(30.0, section.left())))
