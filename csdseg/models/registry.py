"""The one shape of a model registry entry, and the builder lookup both registries share.

A registry (``MODELS`` in csdseg/models/__init__.py for the CAM classifiers, ``SEG_MODELS`` in
csdseg/models/deeplab.py for the segmentation networks) is a dict literal from a model name to
a :class:`ModelEntry`. It stays a literal with constant keys because the config check reads
the allowed names from the source, without importing torch (csdseg/config/choices.py).

Nothing here knows the app: builders take flat typed arguments; ``options`` only *names* the
keyword arguments a family accepts, so the app can pass exactly those from its settings.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class ModelEntry:
    """Where a model's builder lives and what it takes.

    ``builder(num_classes=..., pretrained=..., **options)`` makes the network; ``options`` are
    the keyword arguments (beyond those two) the family takes, named as the settings that feed
    them; ``crop_size`` is the training crop the model's recipe uses (0: set elsewhere).
    """

    module: str
    builder: str
    about: str
    options: tuple[str, ...] = ()
    crop_size: int = 0


def build_from(registry: Mapping[str, ModelEntry], kind: str, name: str, num_classes: int,
               pretrained: str, **kwargs: Any) -> Any:
    """``registry[name]``'s builder called with flat arguments; ValueError for a name it lacks."""
    entry = registry.get(name)
    if entry is None:
        raise ValueError(f"{kind} '{name}' is not one of: {', '.join(registry)}")
    builder = getattr(importlib.import_module(entry.module), entry.builder)
    return builder(num_classes=num_classes, pretrained=pretrained, **kwargs)
