"""experiments/msrc_study.py's table: CSD - control paired by seed, the ceiling's share, the CSD
sample counts, from result files the test writes (no training)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "msrc_study.py"


def _result(miou: float, ctx: float, samples: list[float] | None = None) -> dict:
    part = {"miou": miou, "context_confusion": ctx, "cooc": 0.1, "gap": 0.05}
    return {"fixed": part, "best": {**part, "threshold": 0.5},
            "trivial": {"whole_image": 0.368, "all_background": 0.042}, "n_single": 330,
            "n_multi": 16, "csd_samples_per_epoch": samples or [], "batches_touched": 0.5}


def test_the_table_pairs_csd_with_its_control_by_seed(tmp_path):
    files = {"base_s0": _result(0.45, 0.60), "ctl_s0": _result(0.46, 0.64),
             "ours_x1_s0": _result(0.47, 0.60, [16.0, 16.0]),
             "base_s1": _result(0.45, 0.60), "ctl_s1": _result(0.40, 0.70),
             "ours_x1_s1": _result(0.43, 0.64, [16.0, 16.0])}
    files["base_s0"]["deeplab"] = {"miou": 0.405, "context_confusion": 0.6}
    for name, data in files.items():
        (tmp_path / f"result_{name}.json").write_text(json.dumps(data))
    (tmp_path / "result_ceiling.json").write_text(json.dumps(
        {"val": {"miou": 0.81, "context_confusion": 0.05}, "train": {"miou": 0.9}}))
    out = subprocess.run([sys.executable, str(SCRIPT), "table", "--out", str(tmp_path),
                          "--seeds", "0", "1", "--settings", "ours_x1"],
                         capture_output=True, text=True, check=True).stdout
    miou = next(line for line in out.splitlines() if line.startswith("| CAM mIoU @0.15"))
    # CSD - control per seed: +1 and +3 points -> mean +2.0, std 1.4; never CSD - baseline
    assert miou.rstrip(" |").endswith("+2.0 ± 1.4")
    ctx = next(line for line in out.splitlines() if line.startswith("| CAM context confusion @0.15"))
    assert ctx.rstrip(" |").endswith("-5.0 ± 1.4")
    assert "base: DeepLab val mIoU 40.5 = 50% of the ceiling (n=1)" in out
    assert "ours_x1 seed 1: CSD samples per epoch [16.0, 16.0], batches touched 50%" in out
    assert "whole image 36.8, all background 4.2" in out
