"""How experiments/faults.py runs the pipeline and kills it: the command, one attempt under watch,
the uninterrupted reference with its stage timings, and the kill plan.

A kill point is a stage of the reference's plan (or the start-up, or the table and report at
the end); an attempt aimed at it waits until that stage (or a later one) has started in its
stdout, then sleeps a delay drawn uniformly within the stage's reference duration, then sends
SIGKILL to the whole process group (worker pools die with it, as under a scheduler's
pre-emption).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import fault_checks as checks

REPO = Path(__file__).resolve().parents[1]
# the csdseg source tree the children run: this checkout, or (--src / $FAULTS_SRC) a snapshot
# of it, e.g. `git archive HEAD | tar -x -C DIR`, so that edits in progress elsewhere in a
# shared checkout do not change the code under test halfway through a long run
SRC = Path(os.environ.get("FAULTS_SRC", REPO))


def child_env() -> dict[str, str]:
    # bit-exactness needs one thread count on every side (CPU kernels split sums by thread)
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(SRC),
            "PYTHONFAULTHANDLER": "1"}  # a hung attempt's SIGABRT prints where it hangs
PRESETS = {"irn": "synthetic_irn", "mct": "synthetic_mct"}


def set_source(src: Path) -> None:
    global SRC
    SRC = Path(src).resolve()


def tiny_overrides(data_root: Path, run_root: Path, workers: int = 2) -> list[str]:
    """tests/test_pipeline.py's set (every stage in seconds), with ``workers`` pool processes
    for the CRF stages so that kills also land inside worker pools."""
    return [
        f"data.root={data_root}", f"run_root={run_root}", "name=pl", "device=cpu",
        "data.num_workers=0", "data.infer_split=train", "data.eval_split=train",
        "train.crop_size=64", "train.resize_long=[48,80]", "train.batch_size=8", "train.epochs=1",
        "train.save_every=1", "cam.scales=[1.0]", f"ir_label.num_workers={workers}",
        "irn.backbone=resnet10t", "irn.pretrained=none", "irn.crop_size=48", "irn.path_radius=4",
        "irn.batch_size=8", "irn.epochs=1", "refine.exp_times=4",
        "seg.model=deeplabv2_tiny", "seg.pretrained=none", "seg.frozen_bn=false",
        "seg.crop_size=48", "seg.batch_size=8", "seg.epochs=1", "seg.num_workers=0",
        "seg.scales=[1.0]", "seg.flip=false",
    ]


def pipeline_command(baseline: str, data_root: Path, run_root: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "csdseg.cli", "pipeline", "-c", PRESETS[baseline],
            "--baseline-and-csd", "--gallery", "2", *tiny_overrides(data_root, run_root, workers)]


def make_data(root: Path, n_train: int = 16, n_val: int = 4) -> Path:
    """The tiny synthetic dataset, made by the source under test (rerunning resumes)."""
    subprocess.run([sys.executable, "-m", "csdseg.cli", "synth", str(root), "--n-train",
                    str(n_train), "--n-val", str(n_val), "--size", "64", "--seed", "0",
                    "--workers", "1"], cwd=SRC, env=child_env(), check=True,
                   stdout=subprocess.DEVNULL)
    return root


@dataclass
class Attempt:
    stdout: str
    rc: int
    pid: int
    killed: bool
    landed: str = ""  # where the kill landed: "<run>:<stage>" or a phase
    stderr: str = ""
    lines: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, line)


def attempt(cmd: list[str], log: Path, kill_when=None, timeout: float = 3600.0) -> Attempt:
    """Run ``cmd`` (stdout to ``log``). ``kill_when(t, lines)`` -> a delay once it is time to
    arm the kill (None: not yet); after that delay the process group gets SIGKILL."""
    err = log.with_suffix(".err")
    with open(log, "w") as out, open(err, "w") as errf:
        proc = subprocess.Popen(cmd, cwd=SRC, stdout=out, stderr=errf, env=child_env(),
                                start_new_session=True)
    t0, seen, lines, fire_at = time.monotonic(), 0, [], None
    while proc.poll() is None:
        now = time.monotonic() - t0
        text = log.read_text()
        if len(text) > seen:  # line arrival times: the reference's stage timings
            complete = text[:text.rfind("\n") + 1]
            lines += [(now, line) for line in complete[seen:].splitlines()]
            seen = len(complete)
        if fire_at is None and kill_when is not None:
            delay = kill_when(now, [line for _, line in lines])
            fire_at = None if delay is None else now + delay
        if fire_at is not None and now >= fire_at:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group: workers die with it
            break
        if now > timeout:  # hung (or starved): the traceback to stderr first, then the kill
            proc.send_signal(signal.SIGABRT)
            time.sleep(2.0)
            os.killpg(proc.pid, signal.SIGKILL)
            raise RuntimeError(f"{' '.join(cmd[:5])}... ran past {timeout} s (see {log})")
        time.sleep(0.005)
    rc = proc.wait()
    text = log.read_text()
    return Attempt(text, rc, proc.pid, rc == -signal.SIGKILL, checks.running_stage(text),
                   err.read_text()[-3000:], lines)


@dataclass
class Reference:
    root: Path
    steps: list[tuple[str, str]]  # (run, stage) in plan order, those that ran
    durations: dict  # kill point -> reference seconds
    wall: float


def reference(cmd: list[str], root: Path, log: Path) -> Reference:
    t0 = time.monotonic()
    got = attempt(cmd, log)
    if got.rc != 0:
        raise RuntimeError(f"the uninterrupted run failed (rc {got.rc}):\n{got.stderr}")
    wall = time.monotonic() - t0
    starts, durations, steps, last = {}, {}, [], 0.0
    for t, line in got.lines:
        if m := checks.START.match(line):
            starts[(m[1], m[2])] = t
            durations.setdefault("(startup)", t)  # imports, config, the first skip checks
        elif (m := checks.DONE.match(line)) and (m[1], m[2]) in starts:
            steps.append((m[1], m[2]))
            durations[(m[1], m[2])] = t - starts[(m[1], m[2])]
        if checks.DONE.match(line):
            last = t
    durations["(table+report)"] = max(wall - last, 0.5)
    return Reference(root, steps, durations, wall)


def kill_points(ref: Reference) -> list:
    return ["(startup)", *ref.steps, "(table+report)"]


def arm(point, ref: Reference, u: float):
    """``kill_when`` for a kill point: the delay, once the point's stage (or a later one) has
    started in this attempt's stdout."""
    order = {step: i for i, step in enumerate(ref.steps)}
    span = ref.durations[point]

    def when(_now: float, lines: list[str]):
        if point == "(startup)":
            return u * span
        started, done = checks.parse_stdout("\n".join(lines))
        if point == "(table+report)":
            return u * span if any((r, s) == ref.steps[-1] for r, s, _ in done) else None
        if any(order.get(step, -1) >= order[point] for step in started) or \
                any(order.get((r, s), -1) > order[point] for r, s, _ in done):
            return u * span
        return None
    return when


def _name(point) -> str:
    return point if isinstance(point, str) else f"{point[0]}:{point[1]}"


def deal(points: list, n_kills: int, per_episode: int, rng: random.Random) -> list[list]:
    """``n_kills`` kill points, every point before any point twice, in episodes of
    ``per_episode`` each sorted in plan order (a later kill always finds work left to do)."""
    deck = []
    while len(deck) < n_kills:
        deck += rng.sample(points, len(points))
    deck = deck[:n_kills]
    rank = {_name(p): i for i, p in enumerate(points)}
    return [sorted(deck[i:i + per_episode], key=lambda p: rank[_name(p)])
            for i in range(0, len(deck), per_episode)]
