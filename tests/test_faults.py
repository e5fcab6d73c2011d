"""Fault injection over the whole pipeline (experiments/faults.py, short form): the tiny IRN
pipeline with CSD and its control killed with SIGKILL once inside every kind of stage, rerun until
it completes, must end exactly where an uninterrupted run ends. The checks themselves are tested
first on hand-made folders: each must report the fault it exists to find."""
from __future__ import annotations

import json
import random
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import fault_checks as checks  # noqa: E402
import faults  # noqa: E402


def fake_run_root(root: Path) -> Path:
    """A run root with one file of each kind the harness compares."""
    run = root / "pl"
    for sub in ("cam", "ir_label", "checkpoints", "reports", "logs", "tb/train_cam"):
        (run / sub).mkdir(parents=True)
    np.save(run / "cam" / "a.npy", {"keys": np.array([0]), "cam": np.ones((1, 4, 4))})
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(run / "ir_label" / "a.png")
    torch.save({"model": {"w": torch.arange(4.0)}, "meta": {}}, run / "checkpoints" / "cam.pt")
    (run / "reports" / "eval_cam_train.json").write_text(json.dumps({"miou": 0.25, "seconds": 1}))
    (run / "logs" / "train_cam.jsonl").write_text('{"step": 1, "loss": 0.5, "time": 1.0}\n')
    record = b"x" * 5  # one TFRecord frame: u64 length, u32 crc, data, u32 crc
    (run / "tb/train_cam/events.out.tfevents.1.h.1.0").write_bytes(
        len(record).to_bytes(8, "little") + b"\0" * 4 + record + b"\0" * 4)
    return root


def test_comparison_and_scan_pass_on_identical_roots(tmp_path):
    ref = fake_run_root(tmp_path / "ref")
    got = tmp_path / "got"
    shutil.copytree(ref, got)
    (got / "pl" / "reports" / "eval_cam_train.json").write_text(
        json.dumps({"miou": 0.25, "seconds": 9}))  # a timing is not a result
    (got / "pl" / "cam" / ".a.npy.0123abcd.tmp").write_bytes(b"")  # a kill's hidden temp file
    assert checks.compare_roots(ref, got) == []
    assert checks.scan_run_root(got, dead_pids=set()) == []
    assert checks.hidden_temps(got) == 1


@pytest.mark.parametrize("fault, found", [
    ("cam byte", "pl/cam/a.npy: bytes differ"),
    ("label byte", "pl/ir_label/a.png: bytes differ"),
    ("weight", "pl/checkpoints/cam.pt: 1 tensor(s) differ, e.g. w"),
    ("miou", "pl/reports/eval_cam_train.json: numbers differ at .miou"),
    ("log", "pl/logs/train_cam.jsonl: log records differ"),
    ("missing", "pl/ir_label/a.png: missing"),
])
def test_comparison_finds_each_change(tmp_path, fault, found):
    ref = fake_run_root(tmp_path / "ref")
    got = tmp_path / "got"
    shutil.copytree(ref, got)
    run = got / "pl"
    if fault == "cam byte":
        data = bytearray((run / "cam" / "a.npy").read_bytes())
        data[-1] ^= 1
        (run / "cam" / "a.npy").write_bytes(bytes(data))
    elif fault == "label byte":
        Image.fromarray(np.eye(4, dtype=np.uint8)).save(run / "ir_label" / "a.png")
    elif fault == "weight":
        torch.save({"model": {"w": torch.arange(4.0) + 1e-7}}, run / "checkpoints" / "cam.pt")
    elif fault == "miou":
        (run / "reports" / "eval_cam_train.json").write_text(json.dumps({"miou": 0.2500001}))
    elif fault == "log":
        (run / "logs" / "train_cam.jsonl").write_text('{"step": 1, "loss": 0.6, "time": 1.0}\n')
    else:
        (run / "ir_label" / "a.png").unlink()
    assert checks.compare_roots(ref, got) == [found]


def test_scan_finds_empty_partial_and_stray_files(tmp_path):
    run = fake_run_root(tmp_path / "got") / "pl"
    (run / "sem_seg").mkdir()
    (run / "sem_seg" / "a.png").write_bytes(b"")
    (run / "cam" / "b.npy.tmp").write_bytes(b"x")
    (run / "reports" / "x.json").write_text('{"miou": 0.')
    (run / "logs" / "train_irn.jsonl").write_text('{"step": 1}\n{"ste')
    events = run / "tb/train_cam/events.out.tfevents.1.h.1.0"
    events.write_bytes(events.read_bytes()[:-2])
    (run / ".lock").write_text(json.dumps({"pid": 77}))
    problems = checks.scan_run_root(tmp_path / "got", dead_pids={76})
    assert "pl/sem_seg/a.png: partial (zero bytes)" in problems
    assert "pl/cam/b.npy.tmp: a visible temporary file" in problems
    assert any(p.startswith("pl/reports/x.json: partial (JSONDecodeError") for p in problems)
    assert any(p.startswith("pl/logs/train_irn.jsonl: partial") for p in problems)
    assert f"pl/{events.relative_to(run)}: partial (event record cut short)" in problems
    assert "pl/.lock: unexpected hidden file" in problems  # not a killed process's lock
    assert len(problems) == 6
    assert "pl/.lock: unexpected hidden file" not in checks.scan_run_root(tmp_path / "got", {77})


def test_stdout_records_find_a_redone_stage_and_where_a_kill_landed():
    first = ("[pipeline] pl: train-cam ...\n[pipeline] pl: train-cam       ran (0.9 s)\n"
             "[pipeline] pl: make-cam ...\n")
    assert checks.running_stage(first) == "pl:make-cam"
    assert checks.running_stage("loading\n") == "(startup)"
    assert checks.running_stage(first.rsplit("[", 1)[0]) == "(between stages / table)"
    again = "[pipeline] pl: train-cam ...\n[pipeline] pl: train-cam       ran (0.9 s)\n"
    skipped = "[pipeline] pl: train-cam       skipped (checkpoints/cam.pt present)\n"
    assert checks.redone_stages([first, skipped]) == []
    assert checks.redone_stages([first, again]) == \
        ["attempt 2: pl:train-cam ran again after it had finished"]


def test_snapshots_find_a_finished_file_written_again(tmp_path):
    root = fake_run_root(tmp_path / "got")
    before = checks.snapshot(root)
    assert "pl/cam/a.npy" in before and "pl/logs/train_cam.jsonl" not in before
    (root / "pl" / "logs" / "train_cam.jsonl").write_text("{}\n")  # logs are rewritten by design
    assert checks.rewritten(before, checks.snapshot(root)) == []
    np.save(root / "pl" / "cam" / "b.npy", np.zeros(1))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "pl" / "ir_label" / "tmp.png")
    (root / "pl" / "ir_label" / "tmp.png").replace(root / "pl" / "ir_label" / "a.png")
    assert checks.rewritten(before, checks.snapshot(root)) == \
        ["pl/ir_label/a.png: rewritten after it was finished"]


def test_kills_are_dealt_over_every_point_before_any_twice():
    points = ["(startup)", ("pl", "train-cam"), ("pl", "make-cam"), "(table+report)"]
    episodes = faults.deal(points, 6, 3, random.Random(0))
    assert [len(e) for e in episodes] == [3, 3]
    counts = Counter(faults._name(p) for e in episodes for p in e)
    assert set(counts) == {faults._name(p) for p in points} and max(counts.values()) == 2
    rank = {faults._name(p): i for i, p in enumerate(points)}
    for e in episodes:  # each episode in plan order: a later kill always finds work to do
        assert [rank[faults._name(p)] for p in e] == sorted(rank[faults._name(p)] for p in e)


def test_training_log_is_never_empty_or_cut_and_full_disk_is_one_line(tmp_path, monkeypatch):
    """The harness found it: a kill between the log's creation and its first record left a
    zero-byte logs/<stage>.jsonl (csdseg/engine/logger.py now creates it with its first line)."""
    import errno
    import os

    from csdseg.engine.logger import RunLogger, read_log
    from csdseg.files.atomic import WriteError

    path = tmp_path / "logs" / "train_cam.jsonl"
    logger = RunLogger(path, start_step=0)
    assert not path.exists()  # no record yet: no file
    logger.log(1, loss=0.5)
    assert path.read_text().count("\n") == 1
    logger.log(2, loss=0.4)
    logger.close()
    RunLogger(path, start_step=1).close()  # a resume from step 1 drops step 2
    assert [r["step"] for r in read_log(path)] == [1]
    RunLogger(path, start_step=0).close()  # a restart from scratch keeps nothing: no file
    assert not path.exists()
    logger = RunLogger(path, start_step=0)
    logger.log(1, loss=0.5)

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(WriteError, match=f"^cannot write {path}: no space left on the device"):
        logger.log(2, loss=0.4)
    monkeypatch.undo()
    logger.close()
    assert [r["step"] for r in read_log(path)] == [1]


@pytest.mark.slow
def test_killed_inside_every_stage_the_pipeline_recovers_exactly(tmp_path):
    data = faults.make_data(tmp_path / "data")
    ref_root = tmp_path / "ref"
    ref = faults.reference(faults.pipeline_command("irn", data, ref_root, 2), ref_root,
                           tmp_path / "reference.log")
    rng = random.Random(16)  # the seed of this test's kill points
    kinds: dict[str, list] = {}
    for step in ref.steps:
        kinds.setdefault(step[1], []).append(step)
    assert len(kinds) == 10  # every stage kind, make-csd-masks included
    points = sorted((rng.choice(steps) for steps in kinds.values()), key=ref.steps.index)
    root = tmp_path / "killed"
    result = faults.episode(faults.pipeline_command("irn", data, root, 2), ref, root, points,
                            rng, tmp_path)
    assert result["problems"] == []
    landed = {k["landed"] for k in result["kills"]}
    assert len(result["kills"]) == len(points) and len(landed) >= 6, result["kills"]
