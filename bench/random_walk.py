"""Benchmark: IRN's random walk, official dense squaring vs the sparse products we use.

    python bench/random_walk.py [--device cpu|cuda] [--small 47x63] [--full-dense]

Each measurement runs in a fresh process so its peak memory (RSS on the CPU, allocated bytes
on CUDA) is its own. The dense reference squares an n x n matrix ``exp_times`` times (n = h*w
at stride 4), so it runs at a reduced size by default; ``--full-dense`` also times it at the
full 94x125 map (a 552 MB matrix; minutes on a small CPU). Figures and ratios print last.
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import time

import torch


def _case(method: str, h: int, w: int, radius: int, exp_times: int, device: str,
          repeats: int) -> dict:
    from csdseg.ops.random_walk import dense_random_walk, random_walk

    torch.manual_seed(0)
    dev = torch.device(device)
    boundary = (torch.rand(h, w) ** 4).to(dev)  # mostly low, a few strong edges
    cams = torch.rand(3, h, w).to(dev)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        if method == "dense":
            torch.set_flush_denormal(True)  # as the official figure (denormals flushed)
            out = dense_random_walk(cams, boundary, 10.0, exp_times, radius)
        else:
            out = random_walk(cams, boundary, 10.0, exp_times, radius)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - start)
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(dev) / 2 ** 20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    return {"seconds": min(times), "peak_mb": peak_mb, "out": out.float().cpu()}


def run_case(*args) -> dict:
    """Run :func:`_case` in a fresh spawned process (clean peak-memory counters)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_case, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", default="47x63", help="h x w where the dense reference runs")
    parser.add_argument("--full-dense", action="store_true", help="also run dense at 94x125")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    sh, sw = (int(v) for v in args.small.split("x"))
    lines = []

    full = run_case("sparse", 94, 125, 5, 8, args.device, args.repeats)
    lines.append(f"sparse 94x125 r=5 exp=8: {full['seconds']:.3f} s, peak {full['peak_mb']:.0f} MB")

    dense = run_case("dense", sh, sw, 5, 8, args.device, 1)
    small = run_case("sparse", sh, sw, 5, 8, args.device, args.repeats)
    diff = (dense["out"] - small["out"]).abs().max().item()
    ratio = dense["seconds"] / small["seconds"]
    scale = (94 * 125 / (sh * sw)) ** 3  # dense squaring is O(n^3)
    lines.append(f"dense  {sh}x{sw} r=5 exp=8: {dense['seconds']:.3f} s, peak {dense['peak_mb']:.0f} MB")
    lines.append(f"sparse {sh}x{sw} r=5 exp=8: {small['seconds']:.3f} s, peak {small['peak_mb']:.0f} MB")
    lines.append(f"equal-size speed-up {ratio:.1f}x, max |dense - sparse| = {diff:.2e}")
    lines.append(f"dense at 94x125, extrapolated by n^3: {dense['seconds'] * scale:.0f} s "
                 f"(-> {dense['seconds'] * scale / full['seconds']:.0f}x slower than sparse)")
    if args.full_dense:
        big = run_case("dense", 94, 125, 5, 8, args.device, 1)
        diff = (big["out"] - full["out"]).abs().max().item()
        lines.append(f"dense  94x125 r=5 exp=8: {big['seconds']:.1f} s, peak {big['peak_mb']:.0f} MB; "
                     f"speed-up {big['seconds'] / full['seconds']:.1f}x, max diff {diff:.2e}")

    for radius in (3, 5, 7, 10):
        r = run_case("sparse", 94, 125, radius, 8, args.device, 1)
        lines.append(f"sparse 94x125 r={radius:<2} exp=8: {r['seconds']:.3f} s, peak {r['peak_mb']:.0f} MB")
    for exp_times in (6, 8, 10):
        r = run_case("sparse", 94, 125, 5, exp_times, args.device, 1)
        lines.append(f"sparse 94x125 r=5  exp={exp_times:<2}: {r['seconds']:.3f} s "
                     f"({2 ** exp_times} products; dense needs {exp_times} squarings)")
    print(f"\nrandom walk on {args.device}, {torch.get_num_threads()} torch threads")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
