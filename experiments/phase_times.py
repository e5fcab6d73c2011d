"""Where an experiment's wall time went: training and evaluation of each run under ``--out``.

  python experiments/phase_times.py --out runs/csd_experiment

For each run folder of experiments/csd_experiment.py / csd_study.py (``base_s0``, ``ctl_s0``,
``study_<setting>_s0``, ...): its training time, the last ``time`` its train-cam log recorded,
and its evaluation time, ``wall_s.evaluate`` of its results file where the run recorded one,
else the time from its checkpoint to its results file (the runs made before ``wall_s``
existed). Then the totals: the share of evaluation is what a faster evaluation can remove.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from csdseg.engine.logger import read_log


def result_file(out: Path, run: str) -> Path | None:
    """The file holding the run's metrics: a part file, or a study file (None if neither)."""
    name, _, seed = run.rpartition("_s")
    kind = name.removeprefix("study_")
    for path in (out / f"part_{name}_s{seed}.json", out / f"study_{kind}_s{seed}.json"):
        if path.is_file():
            return path
    return None


def phases(out: Path, run: str) -> dict | None:
    steps = read_log(out / run / "logs" / "train_cam.jsonl", "step")
    result = result_file(out, run)
    if not steps or result is None:
        return None
    data = json.loads(result.read_text())
    metrics = data.get(run.rpartition("_s")[0], data)  # part files nest under the run's kind
    wall = metrics.get("wall_s") or {}
    evaluate = wall.get("evaluate")
    if evaluate is None:
        evaluate = result.stat().st_mtime - (out / run / "checkpoints" / "cam.pt").stat().st_mtime
    return {"train": steps[-1]["time"], "evaluate": evaluate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/csd_experiment")
    args = parser.parse_args()
    out = Path(args.out)
    rows = {run.name: p for run in sorted(out.iterdir())
            if (run / "logs").is_dir() and (p := phases(out, run.name))}
    print("| run | training min | evaluation min | evaluation share |\n|---|---|---|---|")
    for run, p in rows.items():
        print(f"| {run} | {p['train'] / 60:.1f} | {p['evaluate'] / 60:.1f} | "
              f"{100 * p['evaluate'] / (p['train'] + p['evaluate']):.0f}% |")
    train = sum(p["train"] for p in rows.values())
    evaluate = sum(p["evaluate"] for p in rows.values())
    if rows:
        print(f"| all {len(rows)} | {train / 60:.1f} | {evaluate / 60:.1f} | "
              f"{100 * evaluate / (train + evaluate):.0f}% |")


if __name__ == "__main__":
    main()
