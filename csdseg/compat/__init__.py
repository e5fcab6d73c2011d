"""Old import paths, kept for one release: ``import csdseg.io`` still works, with a warning.

The loose top-level modules of csdseg 0.1 moved into packages (issue 30). Code that imports
one by its old name gets the module at its new path -- the very same module object, so
``monkeypatch.setattr``, ``isinstance`` and module-level state behave as before -- and one
:class:`DeprecationWarning` per process naming the new path. No file is left at the old path:
a finder on ``sys.meta_path`` (installed by ``csdseg/__init__.py``) answers the old names.

``csdseg.runs`` and ``csdseg.evaluation`` kept their names as packages (``csdseg.runs.RunDir``,
``csdseg.evaluation.evaluate_labels`` ... are still there), so they need no alias. Remove
this package, and its line in ``csdseg/__init__.py``, in the release after next.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import warnings
from types import ModuleType

# old dotted name -> new dotted name
MOVED: dict[str, str] = {
    "csdseg.cam_file": "csdseg.files.cam",
    "csdseg.evaluation_context": "csdseg.evaluation.context",
    "csdseg.evaluation_groups": "csdseg.evaluation.groups",
    "csdseg.io": "csdseg.files.atomic",
    "csdseg.ir_labels": "csdseg.refiners.ir_labels",
    "csdseg.label_file": "csdseg.files.labels",
    "csdseg.metrics": "csdseg.evaluation.metrics",
    "csdseg.progress": "csdseg.engine.progress",
    "csdseg.psa_scores": "csdseg.refiners.psa_scores",
    "csdseg.run_identity": "csdseg.runs.identity",
    "csdseg.run_lock": "csdseg.runs.lock",
    "csdseg.visualize": "csdseg.report.visualize",
}


class _Alias(importlib.abc.Loader):
    """Loads an old name as the module at its new path, warning once."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.new)
        self._spec = module.__spec__  # the import system sets __spec__ to the alias's: undone below
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # the module stays what it is under its new name
        warnings.warn(f"{self.old} moved to {self.new}; import it from there ({self.old} "
                      "goes in the release after next)", DeprecationWarning,
                      stacklevel=_importing_line())


_IMPORTLIB = os.path.dirname(importlib.__file__) + os.sep
_CSDSEG_INIT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "__init__.py")


def _importing_line() -> int:
    """warnings.warn's stacklevel for the line that imported the old name: the first frame
    outside the import system. warnings skips importlib's frozen bootstrap frames by itself,
    but not ``importlib.import_module`` nor csdseg's ``__getattr__`` (``csdseg.metrics`` after a
    bare ``import csdseg``), so count past those too: else the warning names one of them and
    the default filters hide it."""
    level, frame = 1, sys._getframe(1)  # level 1: exec_module, the caller of warn
    while frame.f_back is not None:
        frame = frame.f_back
        name = frame.f_code.co_filename
        if "importlib" in name and "_bootstrap" in name:
            continue  # not counted by warnings either
        level += 1
        if not name.startswith(_IMPORTLIB) and name != _CSDSEG_INIT:
            return level
    return level


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(fullname, MOVED[fullname]))


def install() -> None:
    """Answer the old names (once per process, however often csdseg is imported). First on
    the path: another finder (an editable install of an older checkout) must not answer them."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
