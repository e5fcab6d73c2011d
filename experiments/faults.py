"""Fault injection over the whole pipeline: SIGKILL at random moments, rerun, compare.

  nice -n 10 .venv/bin/python experiments/faults.py --kills 100 --seed 0 --baseline both

For each baseline (IRN, MCTformer), ``csdseg pipeline --baseline-and-csd`` on a tiny synthetic
dataset runs once uninterrupted (the reference, its stage timings recorded), then in fresh run
roots ("episodes") where it is killed with SIGKILL -- its whole process group, worker pools
included, as a scheduler's pre-emption does -- at random moments and rerun with the same
command until it completes. A kill point is a stage of the plan (or the start-up, or the table
and report at the end) and a delay drawn uniformly within that stage's reference duration, so
kills land during training steps, checkpoint saves, file writes and pool work alike. After each
recovery the run root must equal the reference (experiments/fault_checks.py): CAMs, labels and masks
byte for byte, checkpoint weights exactly, report numbers and logs equal, no partial, empty or
visible temporary file, and no finished stage or file redone. Seeds are printed; a failed
episode's folder is kept under --out.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fault_checks as checks  # noqa: E402
import fault_runner as runner  # noqa: E402
from fault_runner import (REPO, Reference, _name, attempt, arm, deal,  # noqa: E402,F401
                          kill_points, make_data, pipeline_command, reference, set_source)


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


@dataclass
class Baseline:
    """One baseline's reference and its kill plan (episodes of kill points), and the tally."""
    name: str
    ref: Reference
    episodes: list[list]
    seed: int
    tried: int = 0
    survived: int = 0
    per_stage: Counter = field(default_factory=Counter)
    failures: list = field(default_factory=list)


def prepare(baseline: str, data: Path, out: Path, n_kills: int, seed: int, per_episode: int,
            workers: int, echo=print) -> Baseline:
    ref_root = out / baseline / "reference"
    if ref_root.exists():
        shutil.rmtree(ref_root)
    (out / baseline).mkdir(parents=True, exist_ok=True)
    ref = reference(pipeline_command(baseline, data, ref_root, workers), ref_root,
                    out / baseline / "reference.log")
    echo(f"[faults] {baseline}: reference {ref.wall:.1f} s, {len(ref.steps)} stages ran")
    episodes = deal(kill_points(ref), n_kills, per_episode, random.Random(seed))
    return Baseline(baseline, ref, episodes, seed)


def run_episode(b: Baseline, e: int, data: Path, out: Path, workers: int, echo=print) -> None:
    """Episode ``e`` of ``b``'s plan in a fresh run root (kept under ``out`` if it fails)."""
    ep_seed = b.seed * 1000 + e
    ep_dir = out / b.name / f"episode{e + 1}"
    root = ep_dir / "runs"
    ep_dir.mkdir(parents=True, exist_ok=True)
    cmd = pipeline_command(b.name, data, root, workers)
    result = episode(cmd, b.ref, root, b.episodes[e], random.Random(ep_seed), ep_dir)
    ok = not result["problems"]
    b.tried += len(result["kills"])
    b.survived += len(result["kills"]) if ok else 0
    for kill in result["kills"]:
        b.per_stage[(kill["landed"], ok)] += 1
    echo(f"[faults] {b.name} episode {e + 1}/{len(b.episodes)} seed {ep_seed}: "
         f"{len(result['kills'])} kills, landed in "
         f"{', '.join(k['landed'] for k in result['kills']) or '-'}: "
         f"{'recovered exactly' if ok else 'FAILED'}")
    for problem in result["problems"][:20]:
        echo(f"[faults]   {problem}")
    if ok:
        shutil.rmtree(ep_dir)
    else:
        b.failures.append({"baseline": b.name, "episode": e + 1, "seed": ep_seed, **result})


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
    parser.add_argument("--max-minutes", type=float, default=0,
                        help="start no episode that would end past this budget (0: none)")
    parser.add_argument("--src", type=Path, default=runner.SRC, help="csdseg source tree to run "
                        "(default: this checkout, or $FAULTS_SRC)")
    args = parser.parse_args(argv)
    set_source(args.src)
    t0 = time.time()
    baselines = ["irn", "mct"] if args.baseline == "both" else [args.baseline]
    print(f"[faults] seed {args.seed}, {args.kills} kills, baselines {', '.join(baselines)}, "
          f"out {args.out}, source {runner.SRC}", flush=True)
    data = make_data(args.out / "data")
    echo = lambda line: print(line, flush=True)  # noqa: E731
    plans = [prepare(name, data, args.out, args.kills // len(baselines)
                     + (i < args.kills % len(baselines)), args.seed + i, args.per_episode,
                     args.workers, echo) for i, name in enumerate(baselines)]
    # the baselines' episodes interleaved, so that a time budget cut short shares kills fairly
    order = [(b, e) for e in range(max(len(b.episodes) for b in plans)) for b in plans
             if e < len(b.episodes)]
    last = 0.0
    for b, e in order:
        if args.max_minutes and time.time() - t0 + last > 60 * args.max_minutes:
            echo(f"[faults] time budget of {args.max_minutes} min reached: stopping")
            break
        started = time.time()
        run_episode(b, e, data, args.out, args.workers, echo)
        last = time.time() - started
    tried = sum(b.tried for b in plans)
    survived = sum(b.survived for b in plans)
    per_stage = sum((b.per_stage for b in plans), Counter())
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"[faults] kills survived / tried: {survived} / {tried} in {time.time() - t0:.0f} s "
          f"(seed {args.seed}); uptime: {load}")
    print("\n".join(stage_table(per_stage)))
    summary = {"seed": args.seed, "tried": tried, "survived": survived,
               "wall_s": round(time.time() - t0), "uptime": load,
               "failures": [f for b in plans for f in b.failures]}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return 0 if survived == tried and not summary["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
