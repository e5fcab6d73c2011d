"""The module paths before the package layout (issue 30) still import, for one release: the very
same module as the new path, with one DeprecationWarning naming it."""
from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

from csdseg.compat import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_is_the_new_module_and_warns_once(old):
    new = MOVED[old]
    code = (
        "import importlib, sys, warnings\n"
        "warnings.simplefilter('always')\n"
        f"new = importlib.import_module({new!r})\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    import {old} as first\n"
        f"    again = importlib.import_module({old!r})\n"
        f"    from {old.rsplit('.', 1)[0]} import {old.rsplit('.', 1)[1]} as third\n"
        "assert first is new and again is new and third is new, (first, new)\n"
        f"assert new.__name__ == {new!r} and new.__spec__.name == {new!r}, new.__spec__\n"
        "ours = [w for w in caught if issubclass(w.category, DeprecationWarning)]\n"
        "assert len(ours) == 1, [str(w.message) for w in ours]\n"
        f"assert {new!r} in str(ours[0].message), str(ours[0].message)\n"
        "assert ours[0].filename == '<string>', ours[0].filename  # points at the importing line\n"
    )
    # a fresh interpreter: this one may have imported the old name already (once per process)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_every_new_path_exists_and_no_file_is_left_at_an_old_one():
    from pathlib import Path

    root = Path(importlib.import_module("csdseg").__file__).parent
    for old, new in MOVED.items():
        importlib.import_module(new)
        assert not (root / f"{old.split('.', 1)[1]}.py").exists(), old


def test_names_kept_by_the_packages_need_no_alias():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        from csdseg.evaluation import evaluate_cams, evaluate_labels, format_report  # noqa: F401
        from csdseg.runs import MissingInputError, RunDir, eval_report_path  # noqa: F401
