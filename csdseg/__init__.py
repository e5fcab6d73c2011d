"""csdseg: weakly-supervised semantic segmentation with Cross-domain Semantic Decoupling."""
from csdseg.compat import install as _install_old_names

__version__ = "0.1.0"

_install_old_names()  # csdseg.io, csdseg.metrics, ...: the paths before 0.2, with a warning
