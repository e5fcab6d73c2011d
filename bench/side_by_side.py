"""Shared helpers of the benches that time csdseg against the official code path in one run.

A ratio between two runs taken minutes apart on a shared 2-core machine says as much about
the load as about the code, so each bench runs both paths in the same process, interleaved
(reference, csdseg, csdseg, reference, ...: the order flips every round so neither path always
runs first), pairs the two times of each round and reports the ratios' median and spread, in
wall time and in CPU time, together with the machine and its load at the start and the end.
"""
from __future__ import annotations

import os
import resource
import sys
import platform
import statistics
import time
from typing import Callable


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine(torch_threads: bool = True) -> str:
    """One line: CPU model, usable cores, ISA flags that matter here, torch threads."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            words = set(f.read().split())
        flags = " ".join(x for x in ("avx2", "avx512f", "amx_tile") if x in words)
    except OSError:
        pass
    line = f"{cpu_model()}, {cores} usable cores [{flags}]"
    if torch_threads:
        import torch

        line += f", torch {torch.__version__} with {torch.get_num_threads()} threads"
    return line + f", OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min)"


def interleaved(reference: Callable[[int], object], ours: Callable[[int], object], rounds: int,
                check: Callable[[object, object], None] | None = None
                ) -> tuple[list[float], list[float], list[float], list[float]]:
    """Wall and CPU seconds of ``reference(i)`` and ``ours(i)`` for i in range(rounds), run
    alternately (even rounds reference first, odd rounds ours first); ``check(ref_out,
    our_out)`` is called on every round's two results (an equality assertion, say).

    Returns (reference wall, ours wall, reference CPU, ours CPU). CPU time (this process's,
    all its threads) is what a busy machine distorts least: when other jobs hold the cores,
    wall time mostly measures the scheduler, CPU time still the work.
    """
    walls: tuple[list[float], list[float]] = ([], [])
    cpus: tuple[list[float], list[float]] = ([], [])
    for i in range(rounds):
        order = ((0, reference), (1, ours))
        outs: dict[int, object] = {}
        for k, fn in (order if i % 2 == 0 else order[::-1]):
            wall, cpu = time.perf_counter(), time.process_time()
            outs[k] = fn(i)
            cpus[k].append(time.process_time() - cpu)
            walls[k].append(time.perf_counter() - wall)
        if check is not None:
            check(outs[0], outs[1])
    return walls[0], walls[1], cpus[0], cpus[1]


def spread(values: list[float], unit: str = "s", digits: int = 3) -> str:
    return (f"median {statistics.median(values):.{digits}f} {unit} "
            f"(min {min(values):.{digits}f}, max {max(values):.{digits}f}, n {len(values)})")


def ratio_line(what: str, ref_times: list[float], our_times: list[float],
               reference: str = "the official path") -> str:
    """Per-round speed-up reference / ours: median and spread."""
    ratios = [r / o for r, o in zip(ref_times, our_times)]
    return (f"{what}: {statistics.median(ratios):.2f}x faster than {reference} "
            f"(per-round ratio min {min(ratios):.2f}x, max {max(ratios):.2f}x, n {len(ratios)})")


def own_peak_gib() -> float:
    """This process's peak RSS since it started its program. Not ``ru_maxrss``: Linux keeps
    that across execve, so a worker started from a big parent reports the parent's size."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # macOS: bytes; no execve carry-over
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30
