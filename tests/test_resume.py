"""Never lose work: a run killed with SIGKILL and rerun ends exactly where an uninterrupted run
ends (train-cam weights and log, make-cam files byte for byte); a diverging loss stops training
with the last good checkpoint intact; a resume with another config is refused."""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from csdseg.engine.logger import read_log
from csdseg.errors import StageError
from csdseg.runs import RunDir
from csdseg.stages import make_cam, train_cam

REPO = Path(__file__).resolve().parents[1]
PRESET = str(REPO / "csdseg/config/presets/synthetic_irn.yaml")

# 8 val images, batch 2: 4 steps an epoch, 8 steps in all, a resumable checkpoint every step
TRAIN = ["data.train_split=val", "data.infer_split=val", "train.batch_size=2", "train.epochs=2",
         "train.save_every=1", "train.log_every=1"]


def overrides(root: Path, run_root: Path, *extra: str) -> list[str]:
    """The command-line form of ``conftest.tiny_config``."""
    return [f"data.root={root}", f"run_root={run_root}", "device=cpu", "data.num_workers=0",
            "train.crop_size=64", "train.resize_long=[48,80]", "train.batch_size=8",
            "train.epochs=1", "cam.scales=[1.0,0.5]", *extra]


def command(stage: str, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "csdseg.cli", stage, "-c", PRESET, *args]


# Bit-exact comparisons need one thread count on both sides: CPU kernels split their sums by
# thread, and the in-process reference's count is whatever earlier tests left (the demo sets
# it), so the reference pins one thread (conftest's fixture) and so does every child.
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_and_kill(cmd: list[str], ready, timeout: float = 120.0) -> None:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` is true; fail if it ends first."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=CHILD_ENV)
    deadline = time.time() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read()}"
            assert time.time() < deadline, "never reached the kill point"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def check(cmd: list[str]) -> None:
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=CHILD_ENV)
    assert done.returncode == 0, done.stderr[-2000:]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def stray_files(folder: Path) -> list[str]:
    """Visible files that are not finished outputs (hidden .tmp leftovers are allowed)."""
    return [p.name for p in folder.rglob("*") if p.is_file() and p.name.endswith(".tmp")
            and not p.name.startswith(".")]


@pytest.mark.slow
def test_killed_training_resumes_to_identical_weights_and_log(synth_root, tmp_path):
    runs = tmp_path / "runs"
    check(command("train-cam", overrides(synth_root, runs, "name=ref", *TRAIN)))
    cmd = command("train-cam", overrides(synth_root, runs, "name=killed", *TRAIN))
    killed = RunDir(runs / "killed")
    log_path = killed.log("train_cam")
    run_and_kill(cmd, lambda: any(r["step"] >= 2 for r in read_log(log_path, "step")))
    state = torch.load(killed.checkpoint("cam_last"), map_location="cpu", weights_only=False)
    assert 0 < state["step"] < 8 and not killed.checkpoint("cam").exists()
    check(cmd)  # the same command resumes from checkpoints/cam_last.pt

    ref, got = weights(RunDir(runs / "ref").checkpoint("cam")), weights(killed.checkpoint("cam"))
    assert ref.keys() == got.keys()
    for key in ref:  # bit-exact: CPU kernels are deterministic for a fixed thread count
        assert torch.equal(ref[key], got[key]), key
    ref_log = read_log(RunDir(runs / "ref").log("train_cam"), "step")
    got_log = read_log(log_path, "step")
    assert [r["step"] for r in got_log] == list(range(1, 9))  # each step once, none lost
    assert [r["loss"] for r in got_log] == [r["loss"] for r in ref_log]
    assert stray_files(killed.root) == []


def test_resume_with_another_config_is_refused(synth_root, tmp_path):
    cfg = tiny_config(synth_root, tmp_path, *TRAIN, "train.max_steps=1")
    train_cam.run(cfg)
    other = tiny_config(synth_root, tmp_path, *TRAIN, "train.max_steps=1", "optim.lr=0.05")
    last = RunDir.from_config(cfg).checkpoint("cam_last")
    with pytest.raises(StageError, match=rf"^{last} was written with other settings \(optim.lr\); "
                       "resume with the same config, or delete the checkpoint to start over$"):
        train_cam.run(other)


def test_a_checkpoint_from_before_a_rename_or_a_new_option_still_resumes(synth_root, tmp_path):
    """A resumable checkpoint records the config it was written with; one written before a
    setting was renamed (irn.method -> refine.method) or an option was added (cam.backend) is
    read as a run's record is, and a how-not-what setting (train.log_every) does not block it."""
    cfg = tiny_config(synth_root, tmp_path, *TRAIN, "train.max_steps=1")
    train_cam.run(cfg)
    last = RunDir.from_config(cfg).checkpoint("cam_last")
    state = torch.load(last, weights_only=False)
    old = state["config"]
    old["irn"].update({"method": old["refine"]["method"], "exp_times": old["refine"]["exp_times"]})
    del old["refine"], old["cam"]["backend"]
    old["seg"]["freeze_bn"] = old["seg"].pop("frozen_bn")
    old["train"]["log_every"] = 7
    torch.save(state, last)
    train_cam.run(cfg)  # resumes at its last step instead of refusing
    torch.save({**state, "config": {**old, "cam": {**old["cam"], "scales": [2.0]}}}, last)
    with pytest.raises(StageError, match=r"other settings \(cam.scales\)"):
        train_cam.run(cfg)


def test_non_finite_loss_stops_with_last_good_checkpoint(synth_root, tmp_path, monkeypatch):
    real_step, calls = train_cam.classification_step, []

    def poisoned(model, batch):  # the third step's loss is NaN
        loss, scalars = real_step(model, batch)
        calls.append(1)
        return (loss * math.nan if len(calls) == 3 else loss), scalars

    monkeypatch.setattr(train_cam, "classification_step", poisoned)
    cfg = tiny_config(synth_root, tmp_path, *TRAIN)
    with pytest.raises(StageError) as info:
        train_cam.run(cfg)
    run = RunDir.from_config(cfg)
    last = run.checkpoint("cam_last")
    assert str(info.value) == (f"train_cam: the loss became nan at step 2; lower the learning "
                               f"rate (the last good checkpoint {last} is intact)")
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["step"] == 2 and not run.checkpoint("cam").exists()
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_absurd_learning_rate_fails_clearly(synth_root, tmp_path, capsys):
    from csdseg.cli import main

    code = main(["train-cam", "-c", PRESET,
                 *overrides(synth_root, tmp_path, *TRAIN, "optim.lr=1e30")])
    err = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert code == 2 and len(err) == 1  # one line among the progress bars
    assert err[0].startswith("csdseg train-cam: error: train_cam: the loss became")
    assert err[0].endswith("lower the learning rate (the last good checkpoint "
                           f"{RunDir(tmp_path / 'synthetic_irn').checkpoint('cam_last')} is intact)")
    state = torch.load(RunDir(tmp_path / "synthetic_irn").checkpoint("cam_last"),
                       map_location="cpu", weights_only=False)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.slow
def test_killed_make_cam_resumes_to_identical_files(synth_root, tmp_path, one_thread):
    runs = tmp_path / "runs"
    cfg = tiny_config(synth_root, runs, "name=ref", *TRAIN, "train.max_steps=1")
    train_cam.run(cfg)
    make_cam.run(cfg)  # uninterrupted reference
    killed = RunDir(runs / "killed")
    killed.checkpoint("cam").parent.mkdir(parents=True)
    shutil.copy(RunDir.from_config(cfg).checkpoint("cam"), killed.checkpoint("cam"))
    shutil.copy(RunDir.from_config(cfg).checkpoint("cam_last"), killed.checkpoint("cam_last"))
    cmd = command("make-cam", overrides(synth_root, runs, "name=killed", *TRAIN,
                                        "train.max_steps=1"))
    run_and_kill(cmd, lambda: killed.cam_dir.is_dir() and any(killed.cam_dir.glob("*.npy")))
    n_before = len(list(killed.cam_dir.glob("*.npy")))
    assert 0 < n_before < 8
    check(cmd)
    ref_dir = RunDir.from_config(cfg).cam_dir
    names = sorted(p.name for p in ref_dir.glob("*.npy"))
    assert len(names) == 8 and sorted(p.name for p in killed.cam_dir.glob("*.npy")) == names
    for name in names:
        assert (killed.cam_dir / name).read_bytes() == (ref_dir / name).read_bytes(), name
    leftovers = [p.name for p in killed.cam_dir.iterdir() if not p.name.endswith(".npy")]
    assert all(n.startswith(".") and n.endswith(".tmp") for n in leftovers), leftovers
    assert stray_files(killed.root) == []
    assert json.dumps(make_cam.run(cfg)) == json.dumps({"written": 0, "skipped": 8})
