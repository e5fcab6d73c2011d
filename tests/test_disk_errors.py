"""Disk full, read-only and forbidden folders: a failed write keeps the previous file, leaves no
temporary file, and stops with one line naming the folder and its free space; once the cause is
gone the same write (or command) completes. Importing csdseg.files.atomic changes nothing in the
process (no umask juggling), and written files get the usual permissions."""
from __future__ import annotations

import errno
import os
import pickle
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from csdseg.files import atomic as io
from csdseg.files.atomic import WriteError, atomic_write_text
from csdseg.runs import RunDir

REPO = Path(__file__).resolve().parents[1]
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # chmod does not stop root's writes

CAUSES = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exceeded",
          errno.EROFS: "read-only file system", errno.EACCES: "permission denied"}


def _fail(code: int):
    def raise_(*_args, **_kwargs):
        raise OSError(code, os.strerror(code))
    return raise_


class _FailingFile:
    """A file object whose write fails like a full disk (the temp file is real)."""

    def __init__(self, handle, code: int) -> None:
        self._handle, self._code = handle, code

    def write(self, _data):
        raise OSError(self._code, os.strerror(self._code))

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def _patch(monkeypatch, where: str, code: int) -> None:
    """Make the atomic writer fail with ``code`` at one point of its work."""
    if where == "write":
        real = io.os.fdopen
        monkeypatch.setattr(io.os, "fdopen", lambda fd, mode: _FailingFile(real(fd, mode), code))
    elif where == "fsync":
        monkeypatch.setattr(io.os, "fsync", _fail(code))
    elif where == "replace":
        monkeypatch.setattr(io.os, "replace", _fail(code))
    elif where == "create":
        real_open = io.os.open
        monkeypatch.setattr(io.os, "open", lambda path, *a, **k: _fail(code)()
                            if str(path).endswith(".tmp") else real_open(path, *a, **k))
    else:
        raise AssertionError(where)


@pytest.mark.parametrize("where", ["write", "fsync", "replace", "create"])
@pytest.mark.parametrize("code", list(CAUSES))
def test_failed_write_keeps_old_file_leaves_no_temp_and_names_the_folder(tmp_path, monkeypatch,
                                                                         where, code):
    folder = tmp_path / "reports"
    folder.mkdir()
    old = folder / "eval.json"
    old.write_text("previous")
    _patch(monkeypatch, where, code)
    with pytest.raises(WriteError) as info:
        atomic_write_text(old, "new content")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"cannot write {old}: {CAUSES[code]} in {folder} (")
    assert " free there" in msg  # the free space of that folder's disk, whatever it is
    assert msg.endswith("then rerun the same command; the previous eval.json is unchanged")
    if code in (errno.ENOSPC, errno.EDQUOT):
        assert "this file needs 11 B" in msg
    assert info.value.errno == code and info.value.filename == str(old)
    assert isinstance(info.value, OSError)  # `except OSError` callers keep working
    assert old.read_text() == "previous"
    assert sorted(p.name for p in folder.iterdir()) == ["eval.json"]  # no temp file left

    monkeypatch.undo()  # space freed / folder writable again: the rerun completes
    atomic_write_text(old, "new content")
    assert old.read_text() == "new content"
    assert sorted(p.name for p in folder.iterdir()) == ["eval.json"]


def test_new_file_on_a_full_disk_is_not_created(tmp_path, monkeypatch):
    _patch(monkeypatch, "write", errno.ENOSPC)
    with pytest.raises(WriteError, match="no space left") as info:
        atomic_write_text(tmp_path / "new.txt", "x")
    assert "previous" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_free_space_is_the_folders(tmp_path, monkeypatch):
    seen = []

    def disk_usage(path):
        seen.append(Path(path))
        return shutil._ntuple_diskusage(100 * 2**30, 99 * 2**30, 3 * 2**20)

    monkeypatch.setattr(io.shutil, "disk_usage", disk_usage)
    monkeypatch.setattr(io.os, "fsync", _fail(errno.ENOSPC))
    with pytest.raises(WriteError) as info:
        io.atomic_write_bytes(tmp_path / "cam" / "x.npy", b"\0" * 5 * 2**20)
    assert f"in {tmp_path / 'cam'} (3.0 MiB free there, this file needs 5.0 MiB)" in str(info.value)
    assert seen == [tmp_path / "cam"]


def test_other_os_errors_still_name_the_target(tmp_path, monkeypatch):
    monkeypatch.setattr(io.os, "fsync", _fail(errno.EIO))
    with pytest.raises(OSError) as info:
        atomic_write_text(tmp_path / "a.txt", "x")
    assert not isinstance(info.value, WriteError)
    assert info.value.errno == errno.EIO and info.value.filename == str(tmp_path / "a.txt")
    assert list(tmp_path.iterdir()) == []


def test_unrelated_errors_from_the_callers_code_pass_through(tmp_path):
    with pytest.raises(PermissionError) as info:
        with io.atomic_open(tmp_path / "a.bin") as handle:
            handle.write(b"x")
            raise PermissionError(errno.EACCES, "denied", "/some/other/file")
    assert info.value.filename == "/some/other/file"
    assert list(tmp_path.iterdir()) == []


def test_write_error_crosses_processes_and_keeps_one_line():
    exc = WriteError("cannot write /r/x.png: no space left", errno.ENOSPC, "/r/x.png")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is WriteError and str(back) == str(exc)
    assert back.errno == errno.ENOSPC and back.filename == "/r/x.png"
    assert str(WriteError("image 1: " + str(exc))) == "image 1: " + str(exc)  # ops/parallel.py


@pytest.mark.skipif(AS_ROOT, reason="root writes through chmod 0o500; the patched tests cover it")
def test_read_only_folder_by_chmod(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "a.txt").write_text("previous")
    folder.chmod(0o500)
    try:
        with pytest.raises(WriteError) as info:
            atomic_write_text(folder / "a.txt", "new")
        assert str(info.value).startswith(f"cannot write {folder / 'a.txt'}: permission denied "
                                          f"in {folder} (")
        with pytest.raises(WriteError, match=f"permission denied in {folder} "):
            atomic_write_text(folder / "sub" / "b.txt", "new")  # the mkdir fails first
        assert (folder / "a.txt").read_text() == "previous"
        assert sorted(p.name for p in folder.iterdir()) == ["a.txt"]
    finally:
        folder.chmod(0o700)
    atomic_write_text(folder / "a.txt", "new")
    assert (folder / "a.txt").read_text() == "new"


def test_read_only_parent_of_a_new_folder(tmp_path, monkeypatch):
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self == tmp_path / "runs" / "x":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    (tmp_path / "runs").mkdir()
    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(WriteError) as info:
        atomic_write_text(tmp_path / "runs" / "x" / "logs" / "a.jsonl", "x")
    assert str(info.value).startswith(f"cannot write {tmp_path / 'runs/x/logs/a.jsonl'}: read-only "
                                      f"file system in {tmp_path / 'runs'} (")


def test_start_stage_on_a_read_only_run_folder(tmp_path, monkeypatch):
    """The lock is the first file a stage writes: a read-only run folder fails there, clearly."""
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    _patch(monkeypatch, "create", errno.EROFS)
    with pytest.raises(WriteError) as info:
        run.start_stage("train_cam", object())
    assert str(info.value).startswith(f"cannot write {run.root / '.lock'}: read-only file system "
                                      f"in {run.root} (")
    assert list(run.root.iterdir()) == []


# --- permissions and the umask -------------------------------------------------------------

def _umask_of_this_process() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise AssertionError("no Umask line")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the umask from /proc")
def test_importing_and_writing_leave_the_umask_alone(tmp_path):
    """In a fresh interpreter with umask 027 and os.umask booby-trapped: importing
    csdseg.files.atomic and writing through it never calls os.umask, and files get 0o666 & ~umask = 0o640."""
    script = f"""
import os, sys
os.umask(0o027)
def trap(*a):
    raise AssertionError("os.umask was called")
os.umask = trap
import csdseg.files.atomic as io
io.atomic_write_text({str(tmp_path / 'a.txt')!r}, "x")
io.atomic_save_npy({str(tmp_path / 'b.npy')!r}, {{"k": 1}})
status = open("/proc/self/status").read()
print([l.split()[1] for l in status.splitlines() if l.startswith("Umask:")][0])
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "0027"
    for name in ("a.txt", "b.npy"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o640, name


def test_written_file_gets_the_usual_permissions_in_this_process(tmp_path):
    mask = os.umask(0o022)  # the test's own umask change, undone below
    try:
        atomic_write_text(tmp_path / "r.html", "<html></html>")
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.txt", "x")  # the umask in force at the write
    finally:
        os.umask(mask)
    assert stat.S_IMODE(os.stat(tmp_path / "r.html").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "private.txt").st_mode) == 0o600
