"""The module paths before the package layout (issue 30) still import, for one release: the very
same module as the new path, with one DeprecationWarning naming it."""
from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

from csdseg.compat import MOVED

# The loose modules of csdseg 0.1 (commit f011724), written out: a name dropped from MOVED by
# mistake fails here instead of quietly leaving the parametrized test below.
OLD_NAMES = ["csdseg.cam_file", "csdseg.evaluation_context", "csdseg.evaluation_groups",
             "csdseg.io", "csdseg.ir_labels", "csdseg.label_file", "csdseg.metrics",
             "csdseg.progress", "csdseg.psa_scores", "csdseg.run_identity", "csdseg.run_lock",
             "csdseg.visualize"]


def test_every_old_module_is_answered():
    assert sorted(MOVED) == OLD_NAMES


@pytest.mark.parametrize("old", OLD_NAMES)
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


@pytest.mark.parametrize("how", ["importlib.import_module('csdseg.metrics')",
                                 "csdseg.metrics", "__import__('csdseg.metrics')"])
def test_the_warning_names_the_users_line_however_the_old_name_is_reached(how):
    """Not importlib's line (which the default filters hide): ``import_module``, attribute access
    after ``import csdseg``, ``__import__``."""
    code = ("import importlib, warnings, csdseg\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            f"    module = {how}\n"
            "ours = [w for w in caught if issubclass(w.category, DeprecationWarning)]\n"
            "assert [(w.filename, w.lineno) for w in ours] == [('<string>', 4)], "
            "[(w.filename, w.lineno, str(w.message)) for w in ours]\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
