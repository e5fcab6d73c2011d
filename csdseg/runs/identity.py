"""Who holds a run's lock, and whether that process still runs (csdseg/runs/lock.py).

A process is named by pid, host, boot id and the pid's start time (Linux /proc), so a lock
left by a killed process is recognised as stale even after its pid was reused.
"""
from __future__ import annotations

import datetime as _dt
import os
import socket
import sys
from pathlib import Path


# ---------------------------------------------------------------------

def _host() -> str:
    return socket.gethostname()


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of ``pid`` from /proc (Linux), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()  # the command name may hold spaces and ')'
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _command() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith(("csdseg/cli.py", "__main__.py")):
        argv[0] = "csdseg"
    return " ".join(argv)[:500]


def _my_info(stage: str, token: str) -> dict:
    pid = os.getpid()
    stat = _proc_stat(pid)
    now = _now()
    return {"pid": pid, "host": _host(), "stage": stage, "started": now, "stage_started": now,
            "command": _command(), "boot_id": _boot_id(),
            "pid_start": stat[1] if stat else None, "token": token, "version": 1}


def is_writer() -> bool:
    """True in the process that writes run folders: the only process, or torchrun's rank 0
    (read from torch.distributed once initialised, else from torchrun's RANK variable, since
    some stages start writing before or without joining the process group)."""
    torch_dist = sys.modules.get("torch.distributed")
    if torch_dist is not None and torch_dist.is_available() and torch_dist.is_initialized():
        return torch_dist.get_rank() == 0
    try:
        return int(os.environ.get("RANK", "0")) == 0
    except ValueError:
        return True


def _valid(info: object) -> bool:
    return (isinstance(info, dict) and isinstance(info.get("pid"), int) and info["pid"] > 0
            and isinstance(info.get("host"), str))


def holder_alive(info: dict) -> bool:
    """Whether the process a lock of this host names still runs (and is the same process)."""
    pid = info["pid"]
    boot = _boot_id()
    if info.get("boot_id") and boot and info["boot_id"] != boot:
        return False  # the machine rebooted since the lock was taken
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    except OSError:
        return False
    stat = _proc_stat(pid)
    if stat is not None:
        state, start = stat
        if state in ("Z", "X"):
            return False  # killed, not yet reaped by its parent
        if info.get("pid_start") is not None and start != info["pid_start"]:
            return False  # the pid now belongs to another process
    return True
