"""The app's side of the CAM model registry: the ``model.*`` settings -> a built classifier.

The model layer (csdseg/models) knows no config and raises ValueError; here, where the stages
build from the user's settings, such an error is the user's to fix, so it becomes a
ConfigError, which the CLI prints as one line (the message already names the file and fix).
"""
from __future__ import annotations

import torch.nn as nn

from csdseg.config import ConfigError, ModelConfig
from csdseg.models import MODELS, build_model


def build_cam_model(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """The CAM classifier ``cfg`` describes, with the options its registry entry takes (IRN's
    freezing options for the CNN families, MCTformer's for MCTformer)."""
    if cfg.num_classes and cfg.num_classes != num_classes:
        raise ConfigError(f"model.num_classes={cfg.num_classes} but the dataset has {num_classes} "
                          "classes; set model.num_classes=0 to take it from the dataset")
    if cfg.name not in MODELS:
        raise ConfigError(f"model.name '{cfg.name}' is not one of: {', '.join(MODELS)}")
    options = {key: getattr(cfg, key) for key in MODELS[cfg.name].options}
    try:
        return build_model(cfg.name, num_classes, cfg.pretrained, **options)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
