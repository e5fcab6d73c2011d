"""Fault injection over the whole pipeline: SIGKILL at random moments, rerun, compare.

  nice -n 10 .venv/bin/python bench/faults.py --kills 100 --seed 0 --baseline both

For each baseline (IRN, MCTformer), ``csdseg pipeline --baseline-and-csd`` on a tiny synthetic
dataset runs once uninterrupted (the reference, its stage timings recorded), then in fresh run
roots ("episodes") where it is killed with SIGKILL -- its whole process group, worker pools
included, as a scheduler's pre-emption does -- at random moments and rerun with the same
command until it completes. A kill point is a stage of the plan (or the start-up, or the table
and report at the end) and a delay drawn uniformly within that stage's reference duration, so
kills land during training steps, checkpoint saves, file writes and pool work alike. After each
recovery the run root must equal the reference (bench/fault_checks.py): CAMs, labels and masks
byte for byte, checkpoint weights exactly, report numbers and logs equal, no partial, empty or
visible temporary file, and no finished stage or file redone. Seeds are printed; a failed
episode's folder is kept under --out.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fault_checks as checks  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# the csdseg source tree the children run: this checkout, or (--src / $FAULTS_SRC) a snapshot
# of it, e.g. `git archive HEAD | tar -x -C DIR`, so that edits in progress elsewhere in a
# shared checkout do not change the code under test halfway through a long run
SRC = Path(os.environ.get("FAULTS_SRC", REPO))


def child_env() -> dict[str, str]:
    # bit-exactness needs one thread count on every side (CPU kernels split sums by thread)
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(SRC)}
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
        "train.save_every=1", "cam.scales=[1.0]", f"ir_label.workers={workers}",
        "irn.backbone=resnet10t", "irn.pretrained=none", "irn.crop_size=48", "irn.path_radius=4",
        "irn.batch_size=8", "irn.epochs=1", "irn.exp_times=4",
        "seg.model=deeplabv2_tiny", "seg.pretrained=none", "seg.freeze_bn=false",
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


def attempt(cmd: list[str], log: Path, kill_when=None, timeout: float = 600.0) -> Attempt:
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
        if now > timeout:
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


def episode(cmd: list[str], ref: Reference, root: Path, points: list, rng: random.Random,
            logs: Path) -> dict:
    """Kill at each of ``points`` in turn (rerunning after each), then let it finish; check."""
    if root.exists():
        shutil.rmtree(root)
    attempts, kills, problems, snaps, pids = [], [], [], [], set()
    for n, point in enumerate(points):
        u = rng.random()
        got = attempt(cmd, logs / f"attempt{n + 1}.log", arm(point, ref, u))
        attempts.append(got.stdout)
        if not got.killed:  # it finished (or failed) before the kill point came
            if got.rc != 0:
                problems.append(f"attempt {n + 1} failed (rc {got.rc}): {got.stderr[-800:]}")
            break
        kills.append({"aimed": _name(point), "u": round(u, 3), "landed": got.landed})
        pids.add(got.pid)
        problems += [f"after kill {n + 1} ({got.landed}): {p}"
                     for p in checks.scan_run_root(root)]
        snaps.append(checks.snapshot(root))
    for tries in range(3):  # the user reruns the same command until it completes
        got = attempt(cmd, logs / f"final{tries + 1}.log")
        attempts.append(got.stdout)
        if got.rc == 0:
            break
        problems.append(f"the rerun failed (rc {got.rc}): {got.stderr[-800:]}")
    else:
        return {"kills": kills, "problems": problems}
    final = checks.snapshot(root)
    for before in snaps:
        problems += [p for p in checks.rewritten(before, final) if p not in problems]
    problems += checks.redone_stages(attempts)
    problems += checks.scan_run_root(root, dead_pids=pids)
    problems += checks.compare_roots(ref.root, root)
    return {"kills": kills, "problems": problems, "temps": checks.hidden_temps(root)}


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


def run_baseline(baseline: str, data: Path, out: Path, n_kills: int, seed: int, per_episode: int,
                 workers: int, echo=print) -> dict:
    ref_root = out / baseline / "reference"
    if ref_root.exists():
        shutil.rmtree(ref_root)
    (out / baseline).mkdir(parents=True, exist_ok=True)
    ref = reference(pipeline_command(baseline, data, ref_root, workers), ref_root,
                    out / baseline / "reference.log")
    echo(f"[faults] {baseline}: reference {ref.wall:.1f} s, {len(ref.steps)} stages ran")
    plan_rng = random.Random(seed)
    episodes = deal(kill_points(ref), n_kills, per_episode, plan_rng)
    tried, survived, per_stage, failures = 0, 0, Counter(), []
    for e, points in enumerate(episodes):
        ep_seed = seed * 1000 + e
        ep_dir = out / baseline / f"episode{e + 1}"
        root = ep_dir / "runs"
        ep_dir.mkdir(parents=True, exist_ok=True)
        cmd = pipeline_command(baseline, data, root, workers)
        result = episode(cmd, ref, root, points, random.Random(ep_seed), ep_dir)
        ok = not result["problems"]
        tried += len(result["kills"])
        survived += len(result["kills"]) if ok else 0
        for kill in result["kills"]:
            per_stage[(kill["landed"], ok)] += 1
        echo(f"[faults] {baseline} episode {e + 1}/{len(episodes)} seed {ep_seed}: "
             f"{len(result['kills'])} kills, landed in "
             f"{', '.join(k['landed'] for k in result['kills']) or '-'}: "
             f"{'recovered exactly' if ok else 'FAILED'}")
        for problem in result["problems"][:20]:
            echo(f"[faults]   {problem}")
        if ok:
            shutil.rmtree(ep_dir)
        else:
            failures.append({"episode": e + 1, "seed": ep_seed, **result})
    return {"baseline": baseline, "tried": tried, "survived": survived, "failures": failures,
            "per_stage": per_stage, "reference_s": ref.wall}


def stage_table(per_stage: Counter) -> list[str]:
    """Kills survived / tried per stage kind (runs folded: pl, pl_csd and pl_ctl alike)."""
    kinds = Counter(), Counter()
    for (landed, ok), n in per_stage.items():
        kind = landed.split(":", 1)[-1]
        kinds[0][kind] += n
        kinds[1][kind] += n if ok else 0
    return [f"  {kind:<26} {kinds[1][kind]:>4} / {kinds[0][kind]}" for kind in sorted(kinds[0])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100, help="kills in all (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "faults")
    parser.add_argument("--baseline", choices=["irn", "mct", "both"], default="both")
    parser.add_argument("--per-episode", type=int, default=12,
                        help="kills before a run root is let finish and checked")
    parser.add_argument("--workers", type=int, default=2, help="CRF pool processes")
    parser.add_argument("--src", type=Path, default=SRC, help="csdseg source tree to run "
                        "(default: this checkout, or $FAULTS_SRC)")
    args = parser.parse_args(argv)
    set_source(args.src)
    t0 = time.time()
    baselines = ["irn", "mct"] if args.baseline == "both" else [args.baseline]
    print(f"[faults] seed {args.seed}, {args.kills} kills, baselines {', '.join(baselines)}, "
          f"out {args.out}, source {SRC}", flush=True)
    data = make_data(args.out / "data")
    results = []
    for i, baseline in enumerate(baselines):
        share = args.kills // len(baselines) + (i < args.kills % len(baselines))
        results.append(run_baseline(baseline, data, args.out, share, args.seed + i,
                                    args.per_episode, args.workers,
                                    echo=lambda s: print(s, flush=True)))
    tried = sum(r["tried"] for r in results)
    survived = sum(r["survived"] for r in results)
    per_stage = sum((r["per_stage"] for r in results), Counter())
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"[faults] kills survived / tried: {survived} / {tried} in {time.time() - t0:.0f} s "
          f"(seed {args.seed}); uptime: {load}")
    print("\n".join(stage_table(per_stage)))
    summary = {"seed": args.seed, "tried": tried, "survived": survived,
               "wall_s": round(time.time() - t0), "uptime": load,
               "failures": [f for r in results for f in r["failures"]]}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return 0 if survived == tried and not summary["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
