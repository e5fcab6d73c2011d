"""What experiments/faults.py checks after each recovery, as functions of folders and stdout files.

Kept apart from the runner so tests can feed them hand-made folders (a changed byte, an empty
file, a stage run twice) and see each problem reported: a check that cannot fail proves nothing.
Every function returns a list of problems, one readable line each; empty means it passed.
"""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np

# "[pipeline] <run>: <stage> ..." when a stage starts, "[pipeline] <run>: <stage> <status> (why)"
# when the pipeline is done with it (csdseg/stages/pipeline.py execute)
START = re.compile(r"^\[pipeline\] (\S+): (\S+) \.\.\.$")
DONE = re.compile(r"^\[pipeline\] (\S+): (\S+)\s+(ran|skipped|not needed) \((.*)\)$")

# compared byte for byte: deterministic outputs of inference stages
BYTE_EXACT = ("cam", "ir_label", "sem_seg", "csd_masks")
# rewritten by design whenever the pipeline (or a resumed stage) runs again: not "redone work"
REWRITTEN_OK = ("configs/", "logs/", "tb/", "reports/pipeline.", "report.html")
# hidden files a SIGKILL may leave (csdseg/files/atomic.py: ".<target>.<random>.tmp", safe to
# delete; csdseg/runs/lock.py: the lock of the killed process, taken over by the rerun)
HIDDEN_OK = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")
# report fields that are not results (timings): may differ between two identical runs
VOLATILE_KEYS = {"seconds", "time", "elapsed", "wall_s", "duration_s"}


def visible_files(root: Path) -> dict[str, Path]:
    """relative path -> file, for files with no hidden part in their path."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            out[rel.as_posix()] = path
    return out


def _tfrecords_ok(data: bytes) -> bool:
    """A TensorBoard event file is TFRecord frames (u64 length, u32 crc, data, u32 crc) that
    end exactly at the end of the file; a kill mid-write leaves a frame cut short."""
    pos = 0
    while pos < len(data):
        if pos + 12 > len(data):
            return False
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        pos += 12 + length + 4
    return pos == len(data) and len(data) > 0


def unreadable(path: Path) -> str | None:
    """Why ``path`` is not a complete file of its kind (None: it reads back whole)."""
    if path.stat().st_size == 0:
        return "zero bytes"
    name = path.name
    try:
        if name.endswith(".npy"):
            np.load(path, allow_pickle=True)
        elif name.endswith(".png"):
            from PIL import Image

            with Image.open(path) as image:
                image.load()
        elif name.endswith(".pt"):
            import torch

            torch.load(path, map_location="cpu", weights_only=False)
        elif name.endswith(".json"):
            json.loads(path.read_text())
        elif name.endswith(".jsonl"):
            for line in path.read_text().splitlines():
                json.loads(line)
            if not path.read_text().endswith("\n"):
                return "last line cut short"
        elif name.endswith((".yaml", ".yml")):
            import yaml

            yaml.safe_load(path.read_text())
        elif "tfevents" in name and not _tfrecords_ok(path.read_bytes()):
            return "event record cut short"
        elif name.endswith(".html") and "</html>" not in path.read_text():
            return "no </html>"
    except Exception as exc:  # noqa: BLE001 - any failure to read back is the finding
        return f"{type(exc).__name__}: {exc}"[:200]
    return None


def _lock_pid(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def scan_run_root(root: Path, dead_pids: set[int] | None = None) -> list[str]:
    """No zero-byte, partial or visible temporary file anywhere under ``root``; hidden files
    only of the kinds a kill may leave. ``dead_pids``: once the pipeline has completed, a
    ``.lock`` may remain only as the stale lock of one of these killed processes (a run whose
    every stage was done before the kill is never locked again to take it over); None: any
    lock may remain (the run is mid-way)."""
    problems = []
    for rel, path in visible_files(root).items():
        if rel.endswith(".tmp"):
            problems.append(f"{rel}: a visible temporary file")
        elif (why := unreadable(path)) is not None:
            problems.append(f"{rel}: partial ({why})")
    for path in root.rglob(".*"):
        if path.is_file() and not HIDDEN_OK.match(path.name):
            if path.name == ".lock" and (dead_pids is None or _lock_pid(path) in dead_pids):
                continue
            problems.append(f"{path.relative_to(root)}: unexpected hidden file")
    return problems


def hidden_temps(root: Path) -> int:
    return sum(1 for p in root.rglob(".*") if p.is_file() and HIDDEN_OK.match(p.name))


def _numbers(obj, prefix=""):
    """path -> number for every numeric leaf of a JSON document (timings left out)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key not in VOLATILE_KEYS:
                yield from _numbers(value, f"{prefix}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _numbers(value, f"{prefix}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool) or obj is None:
        yield prefix, obj


def _weights_differ(ref: Path, got: Path) -> str | None:
    import torch

    a = torch.load(ref, map_location="cpu", weights_only=False)
    b = torch.load(got, map_location="cpu", weights_only=False)
    if a.get("step") != b.get("step"):
        return f"step {b.get('step')} != {a.get('step')}"
    wa, wb = a["model"], b["model"]
    if wa.keys() != wb.keys():
        return "other tensor names"
    bad = [k for k in wa if not torch.equal(wa[k], wb[k])]
    return f"{len(bad)} tensor(s) differ, e.g. {bad[0]}" if bad else None


def _log_rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def compare_roots(ref: Path, got: Path) -> list[str]:
    """``got`` (a recovered run root) holds what ``ref`` (an uninterrupted one) holds: the same
    files (TensorBoard's, named by time and pid, counted apart), CAMs / labels / masks byte for
    byte, checkpoint weights exactly, report numbers and training logs (less their times) equal."""
    problems = []
    a = {k: v for k, v in visible_files(ref).items() if "/tb/" not in k}
    b = {k: v for k, v in visible_files(got).items() if "/tb/" not in k}
    for rel in sorted(a.keys() - b.keys()):
        problems.append(f"{rel}: missing")
    for rel in sorted(b.keys() - a.keys()):
        problems.append(f"{rel}: not in the uninterrupted run")
    for rel in sorted(a.keys() & b.keys()):
        if rel.endswith("report.html") or "/configs/" in rel or rel.endswith("pipeline.md"):
            continue  # they name the run root's path, which differs by design
        try:
            why = _compare_file(rel, a[rel], b[rel])
        except Exception as exc:  # noqa: BLE001 - an unreadable file is a finding too
            why = f"unreadable ({type(exc).__name__}: {exc})"[:200]
        if why:
            problems.append(f"{rel}: {why}")
    ref_tb = {p.parent.relative_to(ref).as_posix() for p in ref.rglob("*tfevents*")}
    got_tb = {p.parent.relative_to(got).as_posix() for p in got.rglob("*tfevents*")
              if not p.name.startswith(".")}
    problems += [f"{d}: no TensorBoard events" for d in sorted(ref_tb - got_tb)]
    return problems


def _compare_file(rel: str, ref: Path, got: Path) -> str | None:
    parts = rel.split("/")
    if len(parts) > 1 and parts[-2] in BYTE_EXACT:
        return None if ref.read_bytes() == got.read_bytes() else "bytes differ"
    if rel.endswith(".pt"):
        return _weights_differ(ref, got)
    if rel.endswith(".jsonl"):
        return None if _log_rows(ref) == _log_rows(got) else "log records differ"
    if rel.endswith(".json"):
        x = dict(_numbers(json.loads(ref.read_text())))
        y = dict(_numbers(json.loads(got.read_text())))
        bad = sorted(k for k in x.keys() | y.keys() if x.get(k, "absent") != y.get(k, "absent"))
        return f"numbers differ at {', '.join(bad[:3])}" if bad else None
    return None


# --- stdout records: which stage ran, and was any finished stage run again ----------------------


def parse_stdout(text: str) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """(started (run, stage) in order, done (run, stage, status) in order)."""
    started, done = [], []
    for line in text.splitlines():
        if m := START.match(line):
            started.append((m[1], m[2]))
        elif m := DONE.match(line):
            done.append((m[1], m[2], m[3]))
    return started, done


def running_stage(text: str) -> str:
    """Where a process whose stdout is ``text`` was when it died: ``<run>:<stage>`` of a stage
    started and not reported done, else the phase between stages."""
    started, done = parse_stdout(text)
    finished = {(r, s) for r, s, _ in done}
    open_ = [(r, s) for r, s in started if (r, s) not in finished]
    if open_:
        return f"{open_[-1][0]}:{open_[-1][1]}"
    if not done:
        return "(startup)"
    return "(between stages / table)"


def redone_stages(attempts: list[str]) -> list[str]:
    """Stages started again in a later attempt after an earlier attempt reported them done."""
    finished: set[tuple[str, str]] = set()
    problems = []
    for n, text in enumerate(attempts):
        started, done = parse_stdout(text)
        problems += [f"attempt {n + 1}: {r}:{s} ran again after it had finished"
                     for r, s in started if (r, s) in finished]
        finished |= {(r, s) for r, s, status in done if status in ("ran", "skipped")}
    return problems


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(mtime_ns, inode) of every visible output that a finished stage never rewrites."""
    return {rel: (p.stat().st_mtime_ns, p.stat().st_ino) for rel, p in visible_files(root).items()
            if not any(rel.split("/", 1)[-1].startswith(x) for x in REWRITTEN_OK)
            and not rel.endswith("_last.pt")}


def rewritten(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    """Finished outputs written again (work redone), or gone, between two snapshots."""
    return [f"{rel}: {'rewritten' if rel in after else 'deleted'} after it was finished"
            for rel, stamp in sorted(before.items()) if after.get(rel) != stamp]
