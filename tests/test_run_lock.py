"""One writer per run: a second process on a run that another process writes stops at once,
naming it; a lock left by a killed process is taken over; a lock from another host is refused
with the advice to delete it; under torchrun only rank 0 takes it. The main test uses real
processes: a holder, and a real ``csdseg train-cam`` on the same run."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from csdseg.runs import identity as run_identity
from csdseg.runs import lock as run_lock
from csdseg.cli import main
from csdseg.runs import RunDir
from test_resume import PRESET, command, overrides

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["data.train_split=val", "data.infer_split=val", "train.batch_size=4",
         "train.max_steps=1", "train.epochs=1"]

HOLDER = textwrap.dedent("""
    import sys, time
    from csdseg.runs import lock as run_lock
    run_lock.acquire(sys.argv[1], sys.argv[2])
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
""")


@pytest.fixture(autouse=True)
def no_lock_left_behind():
    yield
    run_lock.release()  # locks taken in this (pytest) process by the test


def start_holder(run: Path, stage: str = "train_cam", seconds: float = 300) -> subprocess.Popen:
    """A process that takes ``run``'s lock and sleeps; returns once it holds it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run), stage, str(seconds)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "held", proc.stderr.read()
    return proc


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(run: Path, **fields) -> dict:
    info = {"pid": 1, "host": socket.gethostname(), "stage": "train_cam",
            "started": "2024-05-01T12:00:03+00:00", "stage_started": "2024-05-01T12:00:03+00:00",
            "command": "csdseg train-cam -c voc_irn", "boot_id": None, "pid_start": None,
            "token": "0" * 16, "version": 1, **fields}
    run.mkdir(parents=True, exist_ok=True)
    (run / ".lock").write_text(json.dumps(info))
    return info


# --- two real processes --------------------------------------------------------------------

def test_second_process_stops_at_once_naming_the_first_then_takes_over_after_kill9(
        synth_root, tmp_path):
    runs = tmp_path / "runs"
    run = RunDir(runs / "shared")
    holder = start_holder(run.root)
    try:
        cmd = command("train-cam", overrides(synth_root, runs, "name=shared", *TRAIN))
        start = time.time()
        second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
        took = time.time() - start
        errors = [line for line in second.stderr.splitlines() if ": error: " in line]
        assert second.returncode == 2 and len(errors) == 1, second.stderr[-3000:]
        assert errors[0].startswith(f"csdseg train-cam: error: run folder {run.root} is being "
                                    f"written by another process: pid {holder.pid} on host "
                                    f"{socket.gethostname()} (stage train_cam, started ")
        assert errors[0].endswith(f"wait for it to finish or stop it (kill {holder.pid}), then "
                                  "rerun the same command (finished work is kept)")
        assert "Traceback" not in second.stderr
        assert took < 60, took  # stops at start-up (imports included), not after any work
        assert not run.checkpoint("cam_last").exists() and not run.log("train_cam").exists()
        assert run_lock.read_lock(run.root)["pid"] == holder.pid  # the holder's lock untouched
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run.root / ".lock").exists()  # SIGKILL runs no clean-up: a stale lock remains

    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"took over the stale lock of pid {holder.pid} on host" in rerun.stderr
    assert "that process is no longer running" in rerun.stderr
    assert run.checkpoint("cam").is_file()
    assert not (run.root / ".lock").exists()  # released at exit
    assert not [p for p in run.root.iterdir() if p.name.startswith(".lock")]


def test_lock_is_released_at_exit_after_an_error_and_after_sys_exit(tmp_path):
    for i, ending in enumerate(["raise RuntimeError('boom')", "sys.exit(2)", "pass"]):
        run = tmp_path / f"run{i}"
        script = (f"import sys\nfrom csdseg.runs import lock as run_lock\n"
                  f"run_lock.acquire({str(run)!r}, 'x')\n{ending}\n")
        done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == (0 if ending == "pass" else 1 if "raise" in ending else 2)
        assert list(run.iterdir()) == [], ending


def test_racing_takeovers_of_one_stale_lock_leave_exactly_one_holder(tmp_path):
    """Four processes find the same stale lock at the same moment: one takes it over, the other
    three are refused naming the winner (the takeover guard and the byte-for-byte re-check)."""
    run, go, stop = tmp_path / "run", tmp_path / "go", tmp_path / "stop"
    write_lock(run, pid=dead_pid())
    script = textwrap.dedent(f"""
        import os, sys, time
        from csdseg.runs import lock as run_lock
        judge = run_lock.holder_alive
        def slow_judge(info):  # widen the window between judging a lock stale and replacing it
            alive = judge(info)
            time.sleep(0.3)
            return alive
        run_lock.holder_alive = slow_judge
        print("ready", flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.001)
        try:
            run_lock.acquire({str(run)!r}, "racer")
        except run_lock.RunLockedError as exc:
            print("refused", exc, flush=True)
            sys.exit(3)
        print("won", flush=True)
        while not os.path.exists({str(stop)!r}):  # hold it until every racer has tried
            time.sleep(0.01)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["ready"] * 4
        go.touch()
        results = [p.stdout.readline().strip() for p in procs]
    finally:
        stop.touch()
        for p in procs:
            p.wait(timeout=60)
    won = [p for p, line in zip(procs, results) if line == "won"]
    refused = [line for line in results if line.startswith("refused")]
    assert len(won) == 1 and len(refused) == 3, results
    for line in refused:
        assert f"pid {won[0].pid} on host" in line
    assert not (run / ".lock").exists() and not (run / ".lock.takeover").exists()


# --- the rules, in this process ------------------------------------------------------------

def test_reentrant_within_one_process_records_each_stage(tmp_path):
    run = tmp_path / "run"
    run_lock.acquire(run, "train_cam")
    first = run_lock.read_lock(run)
    assert first["pid"] == os.getpid() and first["host"] == socket.gethostname()
    assert first["stage"] == "train_cam" and first["started"]
    run_lock.acquire(run, "make_cam")  # the pipeline's next stage, same process
    second = run_lock.read_lock(run)
    assert second["stage"] == "make_cam" and second["token"] == first["token"]
    assert second["started"] == first["started"]
    assert Path(os.path.realpath(run)) in run_lock.held_runs()  # others may be held too
    run_lock.release(run)
    assert not (run / ".lock").exists()


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_log_line(tmp_path, caplog):
    run = tmp_path / "run"
    pid = dead_pid()
    write_lock(run, pid=pid, stage="make_cam")
    run_lock.acquire(run, "train_cam")
    assert run_lock.read_lock(run)["pid"] == os.getpid()
    assert f"took over the stale lock of pid {pid} on host {socket.gethostname()} (stage " \
           "make_cam, started 2024-05-01 12:00:03" in caplog.text


def test_a_reused_pid_or_a_reboot_makes_a_lock_stale(tmp_path):
    holder = start_holder(tmp_path / "elsewhere")  # a live process...
    try:
        run = tmp_path / "run"
        write_lock(run, pid=holder.pid, pid_start=1)  # ...that started after the lock was taken
        run_lock.acquire(run, "train_cam")
        assert run_lock.read_lock(run)["pid"] == os.getpid()
        run_lock.release(run)
        if run_identity._boot_id():
            write_lock(run, pid=holder.pid, boot_id="another-boot")  # taken before a reboot
            run_lock.acquire(run, "train_cam")
            assert run_lock.read_lock(run)["pid"] == os.getpid()
    finally:
        holder.kill()
        holder.wait()


def test_live_holder_on_this_host_is_refused(tmp_path):
    holder = start_holder(tmp_path / "run", stage="eval_cam")
    try:
        with pytest.raises(run_lock.RunLockedError) as info:
            run_lock.acquire(tmp_path / "run", "train_cam")
        msg = str(info.value)
        assert f"pid {holder.pid} on host {socket.gethostname()} (stage eval_cam, started " in msg
        assert f"kill {holder.pid}" in msg and "\n" not in msg
    finally:
        holder.kill()
        holder.wait()


def test_lock_from_another_host_is_refused_with_delete_advice(tmp_path, synth_root, capsys):
    runs = tmp_path / "runs"
    lock = write_lock(runs / "shared", pid=4242, host="gpu-node-17", stage="train_irn")
    code = main(["train-cam", "-c", PRESET, *overrides(synth_root, runs, "name=shared", *TRAIN)])
    err = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert code == 2 and len(err) == 1, err
    lock_file = runs / "shared" / ".lock"
    assert err[0] == (
        f"csdseg train-cam: error: run folder {runs / 'shared'} is locked by pid 4242 on host "
        f"gpu-node-17 (stage train_irn, started 2024-05-01 12:00:03, command "
        f"`{lock['command']}`); that host cannot be checked from {socket.gethostname()}: if the "
        f"job there is still running, wait for it or stop it; if it is gone, delete {lock_file} "
        "and rerun the same command")
    assert json.loads(lock_file.read_text())["host"] == "gpu-node-17"  # left alone
    assert not (runs / "shared" / "configs").exists()  # nothing written


def test_unreadable_lock_is_waited_for_then_taken_over_when_old(tmp_path, monkeypatch, caplog):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("")  # cut short by a crash while being created (no-link fallback)
    monkeypatch.setattr(run_lock, "WAIT_S", 0.3)
    with pytest.raises(run_lock.RunLockedError, match="lock file .* is unreadable; if no other"):
        run_lock.acquire(run, "train_cam")  # young: perhaps being written right now
    old = time.time() - 60
    os.utime(run / ".lock", (old, old))
    run_lock.acquire(run, "train_cam")
    assert run_lock.read_lock(run)["pid"] == os.getpid()
    assert "an unreadable lock file" in caplog.text


def test_a_takeover_guard_left_by_a_killed_process_does_not_block(tmp_path, caplog):
    """Killed in the middle of a takeover: its ``.lock.takeover`` names a dead process, so the
    next run removes it at once instead of waiting for it to age."""
    run = tmp_path / "run"
    pid = dead_pid()
    write_lock(run, pid=pid)
    (run / ".lock.takeover").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    start = time.time()
    run_lock.acquire(run, "train_cam")
    assert time.time() - start < 2
    assert run_lock.read_lock(run)["pid"] == os.getpid()
    assert not (run / ".lock.takeover").exists()
    assert "left by a process killed while taking over the lock" in caplog.text


def test_only_rank_0_takes_the_lock_under_torchrun(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert not run_lock.is_writer()
    RunDir(tmp_path / "r1").start_stage("make_cam", _cfg(tmp_path))
    assert not (tmp_path / "r1" / ".lock").exists()
    monkeypatch.setenv("RANK", "0")
    assert run_lock.is_writer()
    RunDir(tmp_path / "r0").start_stage("make_cam", _cfg(tmp_path))
    assert run_lock.read_lock(tmp_path / "r0")["stage"] == "make_cam"


def test_lock_removed_by_hand_and_taken_by_another_process_is_refused(tmp_path):
    run = tmp_path / "run"
    run_lock.acquire(run, "train_cam")
    (run / ".lock").unlink()  # "delete it if that job is gone", done while it was not gone
    holder = start_holder(run)
    try:
        with pytest.raises(run_lock.RunLockedError, match=f"pid {holder.pid} on host"):
            run_lock.acquire(run, "make_cam")
    finally:
        holder.kill()
        holder.wait()


def _cfg(tmp_path):
    from conftest import tiny_config

    return tiny_config(tmp_path, tmp_path)
