"""csdseg: weakly-supervised semantic segmentation with Cross-domain Semantic Decoupling."""
from csdseg.compat import install as _install_old_names

__version__ = "0.1.0"

_install_old_names()  # csdseg.io, csdseg.metrics, ...: the paths before 0.2, with a warning


def __getattr__(name: str):
    """``csdseg.metrics`` after a bare ``import csdseg`` finds an old name as ``import
    csdseg.metrics`` does (with its warning), as it did when the module sat here."""
    import importlib

    from csdseg.compat import MOVED

    if f"csdseg.{name}" in MOVED:
        return importlib.import_module(f"csdseg.{name}")
    raise AttributeError(f"module 'csdseg' has no attribute {name!r}")
