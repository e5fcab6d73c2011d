"""experiments/job_pool.py: experiment pieces as child processes, and csd_experiment.py --jobs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

from job_pool import Job, python_argv, run_jobs  # noqa: E402

# a job that records when it ran, sleeps, and fails when told to
STEP = ("import sys, time, pathlib; d = pathlib.Path(sys.argv[1]); n = sys.argv[2]; "
        "(d / (n + '.start')).write_text(repr(time.time())); time.sleep(float(sys.argv[3])); "
        "(d / (n + '.end')).write_text(repr(time.time())); sys.exit(int(sys.argv[4]))")


def job(tmp: Path, name: str, after=(), sleep=0.3, rc=0) -> Job:
    return Job(name, [sys.executable, "-c", STEP, str(tmp), name, str(sleep), str(rc)],
               after=tuple(after), done=lambda: (tmp / f"{name}.end").is_file())


def times(tmp: Path, name: str) -> tuple[float, float]:
    return (float((tmp / f"{name}.start").read_text()), float((tmp / f"{name}.end").read_text()))


def test_jobs_wait_for_their_dependencies_and_never_exceed_the_slots(tmp_path):
    jobs = [job(tmp_path, "base"), job(tmp_path, "a", ["base"]), job(tmp_path, "b", ["base"]),
            job(tmp_path, "c", ["base"])]
    run_jobs(jobs, slots=2, log_dir=tmp_path / "logs")
    base = times(tmp_path, "base")
    spans = [times(tmp_path, n) for n in "abc"]
    assert all(start >= base[1] for start, _ in spans)  # after base ended
    for t in [s for s, _ in spans]:  # at any start, at most 2 jobs were running
        assert sum(1 for s, e in spans if s <= t < e) <= 2
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [
        "a.log", "b.log", "base.log", "c.log"]


def test_finished_jobs_are_skipped(tmp_path):
    run_jobs([job(tmp_path, "x")], 1, tmp_path / "logs")
    first = times(tmp_path, "x")
    run_jobs([job(tmp_path, "x"), job(tmp_path, "y", ["x"])], 1, tmp_path / "logs")
    assert times(tmp_path, "x") == first and (tmp_path / "y.end").is_file()


def test_a_failed_job_stops_the_pool_and_names_its_log(tmp_path):
    jobs = [job(tmp_path, "bad", rc=3, sleep=0.0), job(tmp_path, "slow", sleep=30),
            job(tmp_path, "later", ["bad"])]
    with pytest.raises(SystemExit, match=r"job bad failed \(exit 3\); its output: .*bad\.log"):
        run_jobs(jobs, 2, tmp_path / "logs")
    assert not (tmp_path / "slow.end").exists()  # terminated, not left running
    assert not (tmp_path / "later.start").exists()


def test_bad_job_lists_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown jobs"):
        run_jobs([job(tmp_path, "a", ["nope"])], 1, tmp_path)
    with pytest.raises(ValueError, match="repeat"):
        run_jobs([job(tmp_path, "a"), job(tmp_path, "a")], 1, tmp_path)
    with pytest.raises(ValueError, match="cycle"):
        run_jobs([job(tmp_path, "a", ["b"]), job(tmp_path, "b", ["a"])], 1, tmp_path)


TINY = ["--seeds", "0", "--n-train", "24", "--n-val", "8", "--size", "48", "--epochs", "1",
        "--extra-epochs", "1", "data.num_workers=0", "ir_label.num_workers=1",
        "train.crop_size=48", "train.resize_long=[40,56]", "train.batch_size=8",
        "cam.scales=[1.0]"]


@pytest.mark.slow
def test_csd_experiment_in_parallel_gives_the_sequential_results(tmp_path):
    """--jobs 2 (base, then csd and ctl at once, three processes) writes the same results as
    one process running them in order; only the folder names differ."""
    results = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        subprocess.run(python_argv(EXPERIMENTS / "csd_experiment.py", "--out", str(out), "--jobs",
                                   jobs, *TINY), check=True, capture_output=True, cwd=tmp_path,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
        text = (out / "results_s0.json").read_text().replace(str(out), "OUT")
        results[jobs] = json.loads(text)
        for run in ("base", "csd", "ctl"):  # the phases' wall times differ by nature
            assert set(results[jobs][run].pop("wall_s")) == {"train", "evaluate"}
    assert set(results["2"]) == {"base", "masks", "csd", "ctl"}
    assert results["1"] == results["2"]
    assert (tmp_path / "jobs2" / "logs" / "csd_s0.log").is_file()


def test_a_killed_pool_takes_its_children_with_it(tmp_path):
    """`kill POOL` (SIGTERM) must not leave a training child running unsupervised."""
    import signal
    import time

    child = f"import os, time, pathlib; pathlib.Path({str(tmp_path / 'pid')!r}).write_text(str(os.getpid())); time.sleep(60)"
    pool = (f"import sys; sys.path.insert(0, {str(EXPERIMENTS)!r}); from pathlib import Path; "
            f"from job_pool import Job, run_jobs; "
            f"run_jobs([Job('c', [sys.executable, '-c', {child!r}])], 1, Path({str(tmp_path)!r}))")
    proc = subprocess.Popen([sys.executable, "-c", pool])
    for _ in range(200):
        if (tmp_path / "pid").is_file() and (tmp_path / "pid").read_text():
            break
        time.sleep(0.05)
    pid = int((tmp_path / "pid").read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) != 0
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError("the child outlived its pool")
