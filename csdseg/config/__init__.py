"""Typed configuration: one dataclass per stage, grouped in :class:`Config`.

A config is built from the defaults, then a YAML file or packaged preset (``-c voc_irn``, or
``-c path/to/file.yaml``), then dotted command-line overrides (``train.epochs=3``). Every key
and every value is checked when it is loaded: an unknown key, a value of the wrong type or a
value outside a setting's declared choices raises :class:`ConfigError` naming the key and the
closest valid one (or the allowed values), so a typo never silently falls back to a default
and never fails hours into a pipeline.

- :mod:`csdseg.config.sections`: the dataclasses, each choice declared in its annotation;
- :mod:`csdseg.config.common`: what the sections share (the training loop, SGD + poly);
- :mod:`csdseg.config.choices`: the check of those choices;
- :mod:`csdseg.config.loading`: building, validating and saving a config; the presets;
- ``csdseg/config/presets/*.yaml``: the presets, shipped as package data.
"""
from csdseg.config.choices import allowed_values, check_choices, choice_keys, field_types
from csdseg.config.loading import (PRESETS_DIR, find_config, load_config, parse_override,
                                   preset_names, save_config, to_dict, validate)
from csdseg.config.sections import (CamConfig, Config, ConfigError, CsdConfig, DataConfig,
                                    EvalConfig, IrLabelConfig, IrnConfig, ModelConfig,
                                    OptimConfig, Pattern, PsaConfig, RefineConfig, Registry,
                                    SegConfig, TrainConfig)
from csdseg.config.common import SgdPoly, TrainLoop

__all__ = [
    "CamConfig", "Config", "ConfigError", "CsdConfig", "DataConfig", "EvalConfig",
    "IrLabelConfig", "IrnConfig", "ModelConfig", "OptimConfig", "Pattern", "PRESETS_DIR",
    "PsaConfig", "RefineConfig",
    "Registry", "SegConfig", "SgdPoly", "TrainConfig", "TrainLoop", "allowed_values", "check_choices", "choice_keys",
    "field_types", "find_config", "load_config", "parse_override", "preset_names",
    "save_config", "to_dict", "validate",
]
