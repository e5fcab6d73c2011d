"""One writer per run: ``runs/<name>/.lock`` names the process that writes the run.

Every stage that writes into a run folder goes through :meth:`csdseg.runs.RunDir.start_stage`,
which calls :func:`acquire`. The lock file holds JSON::

    {"pid": 1234, "host": "node7", "stage": "train_cam", "started": "...", "stage_started": "...",
     "command": "...", "boot_id": "...", "pid_start": 123456, "token": "9f0c...", "version": 1}

* Taken atomically: the JSON goes to a hidden temp file, hard-linked to ``.lock`` (``os.link``
  fails if it exists, so no lock is ever half-written); else ``O_CREAT | O_EXCL``.
* Held for the life of the process, re-entrant (the pipeline's next stage only records itself),
  removed at exit or by :func:`release` (tests, notebooks).
* A second process finds the lock and stops at once with :class:`RunLockedError`, naming the
  holder (pid, host, stage, start time, command) and what to do.
* A lock left by a killed process is stale (same host, and the pid gone, a zombie, a newer
  process's (start time differs) or from before a reboot (boot id differs)) and is taken over,
  with a log line. Two processes finding one stale lock serialise on ``.lock.takeover``
  (``O_EXCL``); the winner removes ``.lock`` only if it still holds the bytes judged stale.
* A lock from another host cannot be checked (the error says to delete it if that job is
  gone). Under ``torchrun`` only rank 0 takes it (:func:`is_writer`).
"""
from __future__ import annotations

import atexit
import errno
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from csdseg.files import atomic as _io
from csdseg.runs.identity import _host, _my_info, _now, _valid, holder_alive, is_writer
from csdseg.errors import StageError

log = logging.getLogger("csdseg.run_lock")  # its name before the move: log lines unchanged
# is_writer lives in run_identity; callers ask it here, beside acquire()
__all__ = ["RunLockedError", "acquire", "held_runs", "is_writer", "read_lock", "release"]

LOCK_NAME = ".lock"
TAKEOVER_NAME = ".lock.takeover"
TAKEOVER_STALE_S = 30.0  # a takeover guard this old: left by a process killed mid-takeover
UNREADABLE_STALE_S = 10.0  # an unreadable lock this old: cut short by a crash while created
WAIT_S = 10.0  # the longest acquire() waits on a concurrent takeover or creation
# os.link's errors on file systems without hard links (FAT, some FUSE and SMB mounts)
_NO_LINK = frozenset(code for code in (errno.EPERM, getattr(errno, "ENOTSUP", None),
                                       getattr(errno, "EOPNOTSUPP", None), errno.ENOSYS,
                                       errno.EXDEV, errno.EMLINK) if code is not None)


class RunLockedError(StageError):
    """Another process writes this run (or may): the message names it and how to proceed."""


@dataclass
class _Held:
    path: Path
    token: str
    pid: int
    info: dict


_held: dict[str, _Held] = {}  # realpath of the run folder -> the lock this process holds
_atexit_registered = False


# --- reading and describing a lock -------------------------------------------------------------

def _read_raw(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _parse(raw: bytes | None) -> dict | None:
    if raw is None:
        return None
    try:
        info = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return info if _valid(info) else None


def read_lock(root: str | Path) -> dict | None:
    """The lock of run folder ``root`` as a dict, or None (no lock, or unreadable)."""
    return _parse(_read_raw(Path(root) / LOCK_NAME))


def _when(info: dict) -> str:
    started = str(info.get("stage_started") or info.get("started") or "?")
    return started.replace("T", " ")[:19]


def _holder(info: dict) -> str:
    command = f", command `{info['command']}`" if info.get("command") else ""
    return (f"pid {info['pid']} on host {info['host']} (stage {info.get('stage', '?')}, "
            f"started {_when(info)}{command})")


def _locked_error(root: Path, info: dict) -> RunLockedError:
    lock = root / LOCK_NAME
    if info["host"] != _host():
        return RunLockedError(
            f"run folder {root} is locked by {_holder(info)}; that host cannot be checked from "
            f"{_host()}: if the job there is still running, wait for it or stop it; if it is "
            f"gone, delete {lock} and rerun the same command")
    return RunLockedError(
        f"run folder {root} is being written by another process: {_holder(info)}; wait for it "
        f"to finish or stop it (kill {info['pid']}), then rerun the same command (finished "
        "work is kept)")


# --- taking and dropping the lock --------------------------------------------------------------

def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` holding ``data``; FileExistsError if it exists (O_EXCL)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        _io._remove(path)
        raise
    os.close(fd)


def _try_create(lock: Path, info: dict) -> bool:
    """Make ``lock`` hold ``info`` if there is no lock; False if there is one."""
    data = (json.dumps(info, indent=1) + "\n").encode("utf-8")
    try:
        fd, tmp = _io.create_temp(lock)
    except OSError as exc:  # a read-only or full run folder fails here, first of all writes
        raise (_io.write_error(exc, lock, len(data)) or exc) from exc
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        try:
            os.link(tmp, lock)  # atomic, and fails if a lock exists: complete or absent
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
        # no hard links on this file system: an exclusive create, written at once
        try:
            _write_new(lock, data)
            return True
        except FileExistsError:
            return False
    except OSError as exc:
        clear = _io.write_error(exc, lock, len(data))
        if clear is None:
            raise
        raise clear from exc
    finally:
        _io._remove(tmp)


def _take_over(lock: Path, stale_raw: bytes, info: dict) -> bool:
    """Replace the stale lock (whose bytes are ``stale_raw``) by ours; False if another process
    is doing the same or the lock changed meanwhile (the caller then looks again)."""
    guard = lock.parent / TAKEOVER_NAME
    try:
        _write_new(guard, json.dumps(dict(info, stage="takeover")).encode())
    except FileExistsError:
        raw = _read_raw(guard)
        other = _parse(raw)
        try:
            age = time.time() - guard.stat().st_mtime
        except FileNotFoundError:
            return False  # that takeover just ended: look again
        dead = (other is not None and other["host"] == _host() and not holder_alive(other))
        if dead or age > (TAKEOVER_STALE_S if other is not None else 2.0):
            # left by a process killed in the middle of a takeover; remove it only if it is
            # still the very guard judged (another process may have replaced it meanwhile)
            if _read_raw(guard) == raw:
                log.warning("removing %s, left by a process killed while taking over the lock",
                            guard)
                _io._remove(guard)
            return False
        time.sleep(0.05)
        return False
    except OSError as exc:
        clear = _io.write_error(exc, guard)
        raise (clear or exc) from exc
    try:
        current = _read_raw(lock)
        if current is not None:
            if current != stale_raw:
                return False  # someone else took it over first: judge the new holder
            os.unlink(lock)
        return _try_create(lock, info)
    finally:
        _io._remove(guard)


def _register(key: str, lock: Path, info: dict) -> None:
    global _atexit_registered
    _held[key] = _Held(lock, info["token"], os.getpid(), info)
    if not _atexit_registered:
        atexit.register(release)
        _atexit_registered = True


def acquire(root: str | Path, stage: str) -> None:
    """Take (or, when this process holds it, update) the lock of run folder ``root``.

    Raises :class:`RunLockedError` when another live process holds it, or one on another host.
    """
    root = Path(root)
    lock = root / LOCK_NAME
    _io.ensure_dir(root, lock)
    key = os.path.realpath(root)
    held = _held.get(key)
    if held is not None and held.pid == os.getpid():
        raw = _read_raw(lock)
        current = _parse(raw)
        if current is not None and current.get("token") == held.token:
            held.info = dict(held.info, stage=stage, stage_started=_now())
            _io.atomic_write_text(lock, json.dumps(held.info, indent=1) + "\n")
            return
        del _held[key]
        if current is not None:  # deleted by hand and taken by another process meanwhile
            raise _locked_error(root, current)
        log.warning("the lock %s of this process was removed; taking it again", lock)
    elif held is not None:  # inherited through fork: not ours
        del _held[key]

    info = _my_info(stage, secrets.token_hex(8))
    deadline = time.monotonic() + WAIT_S
    while True:
        if _try_create(lock, info):
            _register(key, lock, info)
            return
        raw = _read_raw(lock)
        if raw is None and time.monotonic() < deadline:
            continue  # released meanwhile: try again at once
        if raw is None:
            raise RunLockedError(f"could not take the lock {lock}: other processes keep taking "
                                 f"and dropping it; make sure a single job writes {root}")
        current = _parse(raw)
        if current is None:  # being created (no-hard-link fallback), or cut short by a crash
            try:
                age = time.time() - lock.stat().st_mtime
            except FileNotFoundError:
                continue
            if age < UNREADABLE_STALE_S:
                if time.monotonic() > deadline:
                    raise RunLockedError(
                        f"the lock file {lock} is unreadable; if no other csdseg process writes "
                        f"{root}, delete it and rerun the same command")
                time.sleep(0.05)
                continue
            what = "an unreadable lock file, left by a process killed while creating it"
        elif current["host"] == _host() and current["pid"] == os.getpid():
            what = "a lock of this very process that it no longer tracks"
        elif current["host"] != _host():
            raise _locked_error(root, current)
        elif holder_alive(current):
            raise _locked_error(root, current)
        else:
            what = f"the stale lock of {_holder(current)}: that process is no longer running"
        if _take_over(lock, raw, info):
            log.warning("%s: took over %s", lock, what)
            _register(key, lock, info)
            return
        if time.monotonic() > deadline:
            raise RunLockedError(f"could not take the lock {lock}: other processes keep taking "
                                 f"it over; make sure a single job writes {root}, then rerun")


def release(root: str | Path | None = None) -> None:
    """Drop the lock this process holds on ``root`` (every lock it holds when None). Runs at
    exit; a lock that is no longer ours (removed or taken over) is left alone."""
    key = os.path.realpath(root) if root is not None else None
    for name, held in list(_held.items()):
        if key is not None and name != key:
            continue
        del _held[name]
        if held.pid != os.getpid():
            continue  # a forked child: the parent still holds it
        current = _parse(_read_raw(held.path))
        if current is not None and current.get("token") == held.token:
            _io._remove(held.path)


def held_runs() -> list[Path]:
    """Run folders whose lock this process holds."""
    return [Path(k) for k, h in _held.items() if h.pid == os.getpid()]
