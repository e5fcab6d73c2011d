"""Who pairs X_s with X_m: class co-occurrence (Algorithm 1, csdseg/csd/cooccurrence.py) or
shared context (``csd.pair_by=context``, csdseg's extension, csdseg/csd/context_pairing.py).

Both samplers draw only among usable single-label images, those whose fg mask is non-empty
(an empty one would paste nothing), and both have ``pair(index, classes, rng, exclude_own)``.
"""
from __future__ import annotations

import logging

import numpy as np

from csdseg.config import CsdConfig
from csdseg.csd.context_pairing import ContextSampler, context_descriptors
from csdseg.csd.cooccurrence import CooccurrenceSampler
from csdseg.csd.dataset import MaskStore
from csdseg.data.source import Source
from csdseg.ops.confident_labels import split_fg_bg
from csdseg.engine.progress import progress_bar

log = logging.getLogger("csdseg.csd")


def usable_single_label(source: Source, masks: MaskStore) -> np.ndarray:
    """bool [N]: single-label images whose fg mask is non-empty (reads those masks once)."""
    single = np.flatnonzero((source.labels > 0).sum(1) == 1)
    usable = np.zeros(len(source), bool)
    for i in progress_bar(single, desc="csd: single-label masks", leave=False):
        usable[i] = split_fg_bg(masks.load(source.ids[i]))[0].any()
    return usable


def build_sampler(csd: CsdConfig, source: Source, store: MaskStore
                  ) -> CooccurrenceSampler | ContextSampler:
    """Who pairs X_s with X_m: class co-occurrence (Algorithm 1) or shared context (csdseg's
    extension, which reads every image and mask once here for the descriptors)."""
    usable = usable_single_label(source, store)
    if csd.pair_by == "cooccurrence":
        return CooccurrenceSampler(source.labels, usable, csd.tau)
    if csd.apply_to == "multi":  # allowed (an ablation), but on one-object photos it is idle
        log.warning("csd: pair_by=context with apply_to=multi pastes into multi-label images "
                    "only; the extension is meant with csd.apply_to=all (docs/csd.md)")
    return ContextSampler(source.labels, usable, context_descriptors(source, store),
                          csd.context_k)
