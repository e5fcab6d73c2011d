"""bench/gpu_check.py on the CPU with --tiny: the script itself is tested here, so the one
command a GPU session runs is known to work before a GPU shows up (docs/scaling.md)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"


def run_script(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--device", "cpu",
                           "--tiny", "--out", str(out), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_tiny_cpu_run_reports_every_section_with_every_check_passing(tmp_path):
    done = run_script(tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(report["sections"]) == {"stages", "agree", "speed", "estimate"}
    assert report["passed"] is True
    for name, section in report["sections"].items():
        assert section["skipped"] == [] and section["rows"], name
        for row in section["rows"]:
            assert row["ok"] is not False, row
            assert row["value"] is None or math.isfinite(row["value"]), row
    rows = [r["item"] for s in report["sections"].values() for r in s["rows"]]
    assert any("torchrun (gloo, DDP)" in r for r in rows)
    assert any("CSD KL under AMP" in r for r in rows)
    assert sum(r["ok"] is True for r in report["sections"]["stages"]["rows"]) == 6
    stages = {e["stage"] for e in report["estimates"]}
    assert {"train-cam ResNet-50", "train-cam + CSD", "train-aff ResNet-38",
            "make-ir-label (two CRFs)"} <= stages
    assert all(e["hours"] is not None and e["hours"] >= 0 for e in report["estimates"])
    assert "| section | item |" in (tmp_path / "gpu_check.md").read_text()
    assert "all checks passed" in done.stdout


def test_a_broken_stage_fails_the_run(tmp_path):
    # a config the stages refuse: every pipeline and torchrun item fails, the exit status is 1
    done = run_script(tmp_path, "--only", "stages", "model.name=no_such_model")
    assert done.returncode == 1, done.stdout[-3000:]
    rows = json.loads((tmp_path / "gpu_check.json").read_text())["sections"]["stages"]["rows"]
    assert rows and all(r["ok"] is False for r in rows)
    assert "SOME CHECKS FAILED" in done.stdout


def test_a_missed_tolerance_fails_the_run(tmp_path, monkeypatch, one_thread):
    sys.path.insert(0, str(BENCH))
    import gpu_check
    import gpu_check_agree

    # tighter than any difference: a tolerance below zero cannot be met
    monkeypatch.setitem(gpu_check_agree.TOL, "seg", {"cpu": -1.0, "cuda": -1.0})
    code = gpu_check.main(["--device", "cpu", "--tiny", "--out", str(tmp_path), "--only",
                           "agree"])
    assert code == 1
    rows = json.loads((tmp_path / "gpu_check.json").read_text())["sections"]["agree"]["rows"]
    failed = [r["item"] for r in rows if r["ok"] is False]
    assert failed == ["DeepLab logits: max diff / max |logit|"]
    assert torch.get_num_threads() == 1
