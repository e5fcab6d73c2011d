"""torch.distributed on CPU (gloo, loopback only): two processes with half the batch each
reproduce one process with the whole batch, and inference stages split the images without
overlap or gaps."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import tiny_config
from csdseg.files.cam import load_cam
from csdseg.engine import dist
from csdseg.engine.logger import read_log
from csdseg.engine.loop import EpochBatchSampler
from csdseg.errors import StageError
from csdseg.runs import RunDir
from csdseg.stages import make_cam, train_cam
from test_resume import REPO, command, overrides

# frozen_bn=true: with live BatchNorm, statistics over 2x2 images differ from those over 1x4
TRAIN = ["data.train_split=val", "data.infer_split=val", "train.batch_size=4", "train.epochs=2",
         "train.log_every=1", "model.frozen_bn=true"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(stage: str, args: list[str], nproc: int = 2) -> str:
    """Run a stage under torchrun on loopback; returns stderr (every rank's log lines)."""
    cmd = command(stage, args)
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", *cmd[1:]]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def test_each_rank_takes_its_slice_of_every_global_batch(monkeypatch):
    single = list(EpochBatchSampler(10, 4, seed=3, epoch=1))
    ranks = []
    for rank in range(2):
        monkeypatch.setattr(dist, "world", lambda rank=rank: (rank, 2))
        ranks.append(list(EpochBatchSampler(10, 4, seed=3, epoch=1)))
    assert len(single) == 2 and all(len(b) == 2 for r in ranks for b in r)
    assert [a + b for a, b in zip(*ranks)] == single


def test_world_size_not_dividing_the_batch_is_refused(monkeypatch):
    monkeypatch.setattr(dist, "world", lambda: (0, 3))
    with pytest.raises(StageError, match="^the global batch size 4 is not divisible by the "
                       "torchrun world size 3; choose a batch size that is a multiple of "
                       "--nproc_per_node$"):
        EpochBatchSampler(8, 4, seed=0, epoch=0)


def test_shard_splits_without_overlap_or_gaps():
    items = [f"img{i}" for i in range(11)]
    shards = [dist.shard(items, rank, 3) for rank in range(3)]
    assert sorted(sum(shards, [])) == sorted(items)
    assert [len(s) for s in shards] == [4, 4, 3]


@pytest.mark.slow
def test_two_processes_match_one_process(synth_root, tmp_path):
    runs = tmp_path / "runs"
    cfg = tiny_config(synth_root, runs, "name=one", *TRAIN)
    train_cam.run(cfg)
    torchrun("train-cam", overrides(synth_root, runs, "name=two", *TRAIN))
    one, two = RunDir(runs / "one"), RunDir(runs / "two")

    losses_one = [r["loss"] for r in read_log(one.log("train_cam"), "step")]
    losses_two = [r["loss"] for r in read_log(two.log("train_cam"), "step")]
    # rank 0 alone logs: two independent single-process runs would append 8 lines
    assert len(losses_one) == len(losses_two) == 4 and np.allclose(losses_two, losses_one, rtol=1e-5, atol=0)
    w1 = torch.load(one.checkpoint("cam"), weights_only=False)["model"]
    w2 = torch.load(two.checkpoint("cam"), weights_only=False)["model"]
    assert w1.keys() == w2.keys()
    for key in w1:
        assert torch.allclose(w2[key].float(), w1[key].float(), rtol=1e-5, atol=1e-6), key

    # make-cam under torchrun: each rank writes its shard, the union is the one-process output
    make_cam.run(cfg)
    shard_run = RunDir(runs / "sharded")
    shard_run.checkpoint("cam").parent.mkdir(parents=True)
    shutil.copy(one.checkpoint("cam"), shard_run.checkpoint("cam"))
    log = torchrun("make-cam", overrides(synth_root, runs, "name=sharded", *TRAIN))
    assert log.count("make-cam: 4 written, 0 already present") == 2  # 4 images per rank
    names = sorted(p.name for p in one.cam_dir.iterdir())
    assert len(names) == 8 and sorted(p.name for p in shard_run.cam_dir.iterdir()) == names
    for name in names:
        a, b = load_cam(one.cam_dir / name), load_cam(shard_run.cam_dir / name)
        assert np.array_equal(a.keys, b.keys)
        assert np.allclose(a.high_res, b.high_res, atol=1e-5)
        assert np.allclose(a.cam, b.cam, atol=1e-5)


def test_one_process_under_torchrun_joins_the_group_and_trains_through_ddp(monkeypatch):
    """torchrun --nproc_per_node=1 runs the code path of N processes (gloo here, NCCL on a GPU):
    that is how bench/gpu_check.py checks DDP and the CSD teacher beside it on one device."""
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert dist.init_from_env(torch.device("cpu")) == torch.device("cpu")
    assert not dist.joined()  # not launched by torchrun: alone, as before
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1"),
                       ("MASTER_PORT", str(free_port()))):
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    try:
        assert dist.init_from_env(torch.device("cpu")) == torch.device("cpu")
        assert dist.joined() and dist.world() == (0, 1)
    finally:
        torch.distributed.destroy_process_group()
    assert not dist.joined()
