"""Atomic file writes: a crash never leaves a half-written output behind.

Every stage writes through these helpers: the bytes go to a temporary file in the same folder,
then ``os.replace`` renames it over the target, which is atomic on POSIX and Windows.

A write that fails for a reason the user fixes (the disk is full, the folder is read-only or
forbidden: ENOSPC, EDQUOT, EROFS, EACCES, EPERM) removes its temporary file, leaves the previous
target untouched and raises :class:`WriteError`, whose one-line message names the target, its
folder, the free space there and the fix. Importing this module changes nothing in the process
(no umask juggling): temporary files are created with mode 0o666, so the kernel applies the
user's umask (and a folder's default ACL) exactly as for any ordinary file.
"""
from __future__ import annotations

import errno
import io
import json
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from csdseg.errors import WriteError  # defined in the leaf, which imports nothing back

# errno values a user fixes by freeing space, fixing permissions or writing elsewhere
DISK_ERRNOS = frozenset(code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None),
                                          errno.EROFS, errno.EACCES, errno.EPERM)
                        if code is not None)

_TEMP_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
               | getattr(os, "O_CLOEXEC", 0))


def human_size(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def existing_ancestor(path: str | Path) -> Path:
    """``path`` itself or its nearest ancestor that exists (where a failed mkdir stopped)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def free_space(folder: str | Path) -> int | None:
    """Bytes free to this user on the file system holding ``folder`` (None if unknown)."""
    try:
        return shutil.disk_usage(existing_ancestor(folder)).free
    except OSError:
        return None


def write_error(exc: BaseException, target: str | Path,
                needed: int | None = None) -> WriteError | None:
    """The :class:`WriteError` for ``exc`` raised while writing ``target``, or None when ``exc``
    is not a disk-full / read-only / permission error (or is already a WriteError)."""
    if (not isinstance(exc, OSError) or isinstance(exc, WriteError)
            or exc.errno not in DISK_ERRNOS):
        return None
    target = Path(target)
    folder = existing_ancestor(target.parent)
    free = free_space(folder)
    room = f"{human_size(free)} free there" if free is not None else "free space unknown"
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        what = ("the disk quota is exceeded" if exc.errno != errno.ENOSPC
                else "no space left on the device")
        if needed:
            room += f", this file needs {human_size(needed)}"
        fix = "free some space there or set run_root= to a folder on another disk"
    elif exc.errno == errno.EROFS:
        what = "read-only file system"
        fix = "set run_root= (or the output path) to a writable folder"
    else:
        what = "permission denied"
        fix = f"make it writable (chmod u+w {folder}) or set run_root= to a writable folder"
    kept = f"; the previous {target.name} is unchanged" if target.is_file() else ""
    return WriteError(f"cannot write {target}: {what} in {folder} ({room}); {fix}, then rerun "
                      f"the same command{kept}", exc.errno, str(target))


def _named(exc: OSError, target: Path, tmp: Path | None, needed: int | None) -> OSError:
    """The error to raise for a failed write of ``target``: a WriteError for the user-fixable
    causes, else the same error naming the target when it named no file (or the temp file)."""
    ours = exc.filename is None or str(exc.filename) in {str(target), str(tmp), str(target.parent)}
    if not ours:
        return exc  # raised by the caller's own code about another file: leave it alone
    clear = write_error(exc, target, needed)
    if clear is not None:
        return clear
    if exc.errno is not None and (exc.filename is None or str(exc.filename) == str(tmp)):
        # a failed write/fsync (disk error...) names no file: name the target for the user
        return OSError(exc.errno, exc.strerror or str(exc), str(target))
    return exc


def ensure_dir(folder: str | Path, target: str | Path | None = None) -> Path:
    """``mkdir -p folder``; a read-only or forbidden parent raises :class:`WriteError`
    (naming ``target``, the file about to be written there, when given)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        clear = write_error(exc, target if target is not None else folder / ".")
        if clear is not None:
            raise clear from exc
        raise
    return folder


def create_temp(path: Path) -> tuple[int, Path]:
    """An empty hidden ``.<name>.<random>.tmp`` beside ``path``, opened for writing.

    Mode 0o666 less the umask, as for any ordinary file (``tempfile.mkstemp`` makes 0600). The
    dot prefix keeps a temp file orphaned by SIGKILL hidden from globs like ``cam/*.npy``.
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, _TEMP_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path))


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:  # already gone, or the folder turned read-only: nothing more to do
        pass


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", size: int | None = None) -> Iterator[Any]:
    """Open a temporary file beside ``path``; rename it onto ``path`` only on success.

    ``size`` (bytes about to be written, if known) goes into the disk-full message.
    """
    path = Path(path)
    ensure_dir(path.parent, path)
    try:
        fd, tmp = create_temp(path)
    except OSError as exc:
        raise _named(exc, path, None, size) from exc
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, OSError):
            named = _named(exc, path, tmp, size)
            if named is not exc:
                raise named from exc
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb", size=len(data)) as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_save_npy(path: str | Path, obj: Any) -> None:
    """``np.save`` of an array or a dict (dicts load with ``np.load(p, allow_pickle=True).item()``)."""
    buffer = io.BytesIO()
    np.save(buffer, obj, allow_pickle=True)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_save_png(path: str | Path, image: Any) -> None:
    """Save a PIL image (palette or RGB) as PNG, atomically."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_link(src: str | Path, dst: str | Path) -> None:
    """``dst`` as a hard link to ``src`` (a copy where the file system has no links),
    appearing atomically; write failures raise :class:`WriteError` as the other writers."""
    src, dst = Path(src), Path(dst)
    ensure_dir(dst.parent, dst)
    tmp = dst.parent / f".{dst.name}.{secrets.token_hex(4)}.tmp"
    try:
        try:
            os.link(src, tmp)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except OSError as exc:
        _remove(tmp)
        named = _named(exc, dst, tmp, src.stat().st_size if src.is_file() else None)
        raise named from exc
