"""One command that checks csdseg on a GPU: every stage on the device, the device against the
CPU, time and memory at the official sizes, and what they mean in hours for VOC and COCO.

    python bench/gpu_check.py --device cuda --out runs/gpu_check        # about 6-8 minutes
    python bench/gpu_check.py --device cpu --tiny --out /tmp/gpu_check   # the CI test, ~1-2 min

Sections (docs/scaling.md, "gpu_check"), each in its own file:
1. ``stages`` (gpu_check_stages.py): the tiny pipeline end to end for IRN and MCTformer,
   baseline, control and CSD, on the device (AMP on CUDA), in a temporary folder; then the CSD
   train-cam under ``torchrun --nproc_per_node=1`` (NCCL on CUDA, gloo on the CPU).
2. ``agree`` (gpu_check_agree.py): the device against the CPU on the same weights and inputs.
3. ``speed`` (gpu_check_speed.py): each stage's unit of work at the official sizes.
4. ``estimate`` (gpu_check_estimate.py): hours per stage for VOC train_aug and COCO.
It prints one markdown report and writes it, with every number, to ``OUT/gpu_check.json`` and
``OUT/gpu_check.md``; the exit status is 1 when a check fails or an item raises.

How the run is bounded (``--budget``, 480 s): each section gets a share of it (BUDGET_SHARE);
before each item a section checks its time and, once spent, reports the remaining items as
"skipped (section budget spent)" rather than running them; the torchrun child gets the
section's remaining time as its timeout; and a watchdog (faulthandler) ends the process 60 s
after the whole budget, printing where it hung. Weights are seeded random ones: nothing is
downloaded. ``--tiny`` swaps in the CPU-sized networks and sizes (gpu_check_models.py).
Extra ``KEY=VALUE`` arguments go to the tiny pipelines' configs.
"""
from __future__ import annotations

import argparse
import datetime
import faulthandler
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import gpu_check_agree  # noqa: E402
import gpu_check_estimate  # noqa: E402
import gpu_check_speed  # noqa: E402
import gpu_check_stages  # noqa: E402
from csdseg.stages.args import parse_args  # noqa: E402
from gpu_check_models import sizes  # noqa: E402
from gpu_check_report import Section, markdown, write_json  # noqa: E402
from side_by_side import load, machine  # noqa: E402

from csdseg.device import resolve_device  # noqa: E402

SECTIONS = ("stages", "agree", "speed", "estimate")
# of --budget: the pipelines (~1.5 min on an H100, mostly CPU-side CRFs and process start-up),
# the agreement runs (CPU forwards of the official networks at half a VOC image), the timings
BUDGET_SHARE = {"stages": 0.35, "agree": 0.15, "speed": 0.43, "estimate": 0.07}


def header(device: torch.device, args: argparse.Namespace) -> dict:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "device": gpu or "cpu", "machine": machine(), "load": load(),
            "torch": torch.__version__, "cuda": torch.version.cuda, "tiny": args.tiny,
            "budget_s": args.budget, "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="CPU-sized networks and inputs")
    parser.add_argument("--out", default="runs/gpu_check", help="folder of the report files")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for the whole run")
    parser.add_argument("--repeats", type=int, default=0, help="timed runs per item "
                        "(0: 3, or 1 with --tiny)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = parse_args(parser, argv)
    start = time.monotonic()
    faulthandler.dump_traceback_later(args.budget + 60, exit=True)
    try:
        return run(args, start)
    finally:
        faulthandler.cancel_dump_traceback_later()


def run(args: argparse.Namespace, start: float) -> int:
    from csdseg.data.synthetic import generate

    device = resolve_device(args.device)
    s = sizes(args.tiny)
    repeats = args.repeats or (1 if args.tiny else 3)
    info = header(device, args)
    print(f"gpu_check on {info['device']} ({info['machine']}); load {info['load']}", flush=True)
    sections: dict[str, Section] = {}
    estimates: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as work:
        root = generate(Path(work) / "data", n_train=32, n_val=8, size=64, seed=0, workers=1)
        for name in args.only:
            section = sections[name] = Section(name, args.budget * BUDGET_SHARE[name])
            print(f"[gpu_check] {name} ({section.budget_s:.0f} s budget) ...", flush=True)
            if name == "stages":
                gpu_check_stages.run(section, root, Path(work) / "runs", device, args.overrides)
            elif name == "agree":
                gpu_check_agree.run(section, s, device, root)
            elif name == "speed":
                gpu_check_speed.run(section, s, device, repeats)
            else:
                speed = sections.get("speed") or Section("speed", 0)
                estimates = gpu_check_estimate.run(section, speed, args.tiny)
            print(f"[gpu_check] {name} done in {time.monotonic() - section.start:.0f} s",
                  flush=True)
    info["seconds"] = round(time.monotonic() - start, 1)
    out = Path(args.out)
    report = write_json(out / "gpu_check.json", info, sections, estimates)
    text = (f"## gpu_check: {info['device']}{' (--tiny)' if args.tiny else ''}, "
            f"{info['date']}, {info['seconds']:.0f} s\n\n{info['machine']}; torch "
            f"{info['torch']}, CUDA {info['cuda']}; cudnn.benchmark "
            f"{info['cudnn_benchmark']}, cudnn TF32 {info['cudnn_allow_tf32']}\n\n"
            f"{markdown(sections)}\n")
    if estimates:
        text += "\n" + gpu_check_estimate.markdown(estimates, info["device"]) + "\n"
    verdict = "all checks passed" if report["passed"] else "SOME CHECKS FAILED"
    text += f"\n{verdict}\n"
    (out / "gpu_check.md").write_text(text)
    print("\n" + text, flush=True)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")  # the pipelines' progress bars drown the report
    sys.exit(main())
