"""Atomic writes: the target appears whole or not at all, with ordinary permissions."""
import os

import pytest

from csdseg.files.atomic import atomic_open, atomic_write_text


def test_written_file_has_umask_permissions(tmp_path):
    atomic_write_text(tmp_path / "report.html", "<html></html>")
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(tmp_path / "report.html").st_mode & 0o777 == 0o666 & ~mask


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as handle:
            handle.write("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
