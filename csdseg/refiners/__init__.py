"""Pseudo-mask refiners: CAMs -> label maps, one file each, picked by ``refine.method``.

make-sem-seg runs whichever refiner ``refine.method`` names; each entry of :data:`REFINERS` is a
:class:`~csdseg.refiners.base.Refiner` that says what it is, which training stage it needs (or
None) and how it refines one image. The config's allowed ``refine.method`` values are this
registry's keys (read from this file's source at load, so a bad value fails before any work).

==========  ===========================================================  ==========
name        what                                                         trained by
==========  ===========================================================  ==========
rw          IRN's random walk over the trained IRN's boundary map        train-irn
crf         CAMs + a constant background score, dense CRF                (nothing)
psa         PSA's random walk over the trained AffinityNet's affinities  train-aff
==========  ===========================================================  ==========

Adding a refiner ``x`` takes exactly (``psa`` was added this way):

1. ``csdseg/refiners/x.py`` defining ``prepare(cfg, rd) -> state`` (once per run: e.g. load
   the network from ``rd.checkpoint("x")``), ``refine(state, record, img) -> uint8 [H, W]``
   (0 background, 1..K) and ``REFINER = Refiner(name="x", description=..., trained_by=
   "train-x", checkpoint="x", prepare=prepare, refine=refine, parallel=False,
   settings=(...))``; see ``random_walk.py`` / ``psa.py`` (trained, one device) and ``crf.py``
   (no training, worker processes) for the two kinds;
2. one line in :data:`REFINERS` below: ``"x": _entry("x"),``;
3. if it trains: the training stage itself (``csdseg/stages/train_x.py`` writing
   ``checkpoints/x.pt``, as ``train_aff.py``) and its entry in the stage list, placed before
   make-sem-seg, with ``needed=_trained_for("train-x")`` (the pipeline asks
   :func:`needs_training` whether to run it), and there make-sem-seg's upstream and keys.

Nothing else changes: make-sem-seg and the config check read this registry.
"""
from __future__ import annotations

import importlib

from csdseg.refiners.base import Refiner


def _entry(module: str) -> Refiner:
    return importlib.import_module(f"csdseg.refiners.{module}").REFINER


# refine.method -> refiner; the keys stay string literals: the config check reads them from source
REFINERS: dict[str, Refiner] = {
    "rw": _entry("random_walk"),
    "crf": _entry("crf"),
    "psa": _entry("psa"),
}

for _name, _refiner in REFINERS.items():  # a misspelt key would pick another refiner's name
    if _refiner.name != _name:
        raise ValueError(f"REFINERS['{_name}'] holds the refiner named '{_refiner.name}'")


def get_refiner(method: str) -> Refiner:
    """The refiner ``refine.method=method`` picks; ConfigError listing the allowed values."""
    if method not in REFINERS:
        from csdseg.config import ConfigError, RefineConfig
        from csdseg.config.choices import check_value, field_types

        check_value("refine.method", method, field_types(RefineConfig)["method"])  # raises, as at load
        raise ConfigError(f"refine.method must be one of {', '.join(REFINERS)}, got '{method}'")
    return REFINERS[method]


def needs_training(method: str) -> str | None:
    """The training stage (e.g. ``"train-irn"``) whose checkpoint refiner ``method`` needs, or
    None when it needs none; the pipeline skips a refiner's training stage otherwise."""
    return get_refiner(method).trained_by


def training_stages() -> tuple[str, ...]:
    """Every stage some refiner is trained by (each runs only when ``refine.method`` needs it)."""
    return tuple(dict.fromkeys(r.trained_by for r in REFINERS.values() if r.trained_by))


__all__ = ["REFINERS", "Refiner", "get_refiner", "needs_training", "training_stages"]
