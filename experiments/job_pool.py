"""Pieces of an experiment as child processes, ``slots`` at a time, in dependency order.

The experiment scripts train several independent networks (a seed's control and CSD run only
need its baseline; seeds need nothing of each other). One torch thread per process and one
process per core uses a 2-core machine fully, where one process with two threads gains little
on these small networks. Each piece is a separate command that writes its own result file,
so the results are those of the sequential path (nothing is shared between processes but
files on disk; with the same ``OMP_NUM_THREADS``: float sums depend on the thread count), and a
killed pool resumes: finished pieces are skipped.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class Job:
    name: str  # unique; also the name of its log file
    argv: list[str]  # the command
    after: tuple[str, ...] = ()  # jobs that must have finished first
    done: Callable[[], bool] = field(default=lambda: False)  # already finished: skipped


def run_jobs(jobs: list[Job], slots: int, log_dir: Path) -> None:
    """Run ``jobs`` with at most ``slots`` at once, each child's output in
    ``log_dir/<name>.log``; a failed job stops the others and raises SystemExit naming its log."""
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"job names repeat: {names}")
    unknown = {a for j in jobs for a in j.after} - set(names)
    if unknown:
        raise ValueError(f"jobs wait for unknown jobs: {sorted(unknown)}")
    log_dir.mkdir(parents=True, exist_ok=True)
    # one torch thread per child unless the caller chose otherwise
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    finished = {j.name for j in jobs if j.done()}
    pending = [j for j in jobs if j.name not in finished]
    running: dict[str, tuple[subprocess.Popen, float, object]] = {}
    start = time.time()

    def stop(signum, frame):  # a plain `kill` of the pool stops its children too
        raise SystemExit(f"stopped by signal {signum}")
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while pending or running:
            for job in [j for j in pending if all(a in finished for a in j.after)]:
                if len(running) >= max(1, slots):
                    break
                log = open(log_dir / f"{job.name}.log", "a")
                try:
                    proc = subprocess.Popen(job.argv, stdout=log, stderr=subprocess.STDOUT, env=env)
                except BaseException:
                    log.close()
                    raise
                running[job.name] = (proc, time.time(), log)
                pending.remove(job)
                print(f"[{time.time() - start:6.0f} s] start {job.name}", flush=True)
            if not running:  # nothing can start: a dependency cycle
                raise ValueError(f"jobs wait in a cycle: {[j.name for j in pending]}")
            time.sleep(0.5)
            for name, (proc, began, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[name]
                if proc.returncode != 0:
                    raise SystemExit(f"job {name} failed (exit {proc.returncode}); its output: "
                                     f"{log_dir / (name + '.log')}")
                finished.add(name)
                print(f"[{time.time() - start:6.0f} s] done  {name} ({time.time() - began:.0f} s)",
                      flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for proc, _, log in running.values():  # on a failure, Ctrl-C or kill: no orphans
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def python_argv(script: str | Path, *args: str) -> list[str]:
    """The command line that runs ``script`` with this interpreter."""
    return [sys.executable, str(script), *args]
