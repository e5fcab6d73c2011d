"""Building a :class:`Config`: defaults, a YAML file or packaged preset, dotted overrides;
then every value checked; and saving the resolved config a run used."""
from __future__ import annotations

import dataclasses
import difflib
import logging
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from csdseg.config.choices import check_choices, field_types
from csdseg.config.sections import Config, ConfigError
from csdseg.csd.variants import resolve_variant  # imports no torch and no config

# The packaged presets (package data): ``-c voc_irn`` finds PRESETS_DIR / "voc_irn.yaml".
PRESETS_DIR = Path(__file__).resolve().parent / "presets"

# Settings renamed so that one setting has one name everywhere: old dotted key -> new one (same
# section). The old name is accepted, in files and overrides, for one release, with a warning
# that names the new key; recorded configs of older runs are read the same way.
# Old key -> today's, accepted with a warning for one release (and read from older runs'
# recorded configs, csdseg/config/fingerprint.py). A key may move to another section.
RENAMED: dict[str, str] = {
    "seg.lr_head_mult": "seg.head_lr_mult",
    "seg.freeze_bn": "seg.frozen_bn",  # the name model.frozen_bn has
    "ir_label.workers": "ir_label.num_workers",  # as data.num_workers, seg.num_workers
    "irn.rescale": "irn.scale_range",  # as seg.scale_range (train.resize_long is pixels)
    # the refiners' settings left IrnConfig for their own section
    "irn.method": "refine.method",
    "irn.sem_seg_bg_threshold": "refine.bg_threshold",
    "irn.beta": "refine.beta",
    "irn.exp_times": "refine.exp_times",
    "irn.walk_radius": "refine.walk_radius",
    "irn.walk_threads": "refine.walk_threads",
    "irn.crf_preset": "refine.crf_preset",
    "irn.crf_bg_threshold": "refine.crf_bg_threshold",
}
log = logging.getLogger("csdseg.config")


def _closest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.0)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert only where it is lossless.

    For a ``Literal`` or ``Annotated`` setting only the type is checked here; the value is
    checked against its allowed ones once the whole config is built (:func:`validate`)."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _coerce(value, typing.get_args(tp)[0], key)
    if origin is Literal:
        (kind,) = {type(v) for v in typing.get_args(tp)}  # one type per Literal
        return _coerce(value, kind, key)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list like [1, 2], got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} does not match {tp}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover - a programming error


def renamed(values: dict[str, Any], warn: bool = True) -> dict[str, Any]:
    """Nested config values with every old key of :data:`RENAMED` under today's name (a value
    given under both names keeps today's); a warning names each old key when ``warn``."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in values.items()}
    for old, new in RENAMED.items():
        section, leaf = old.split(".", 1)
        if not (isinstance(out.get(section), dict) and leaf in out[section]):
            continue
        if warn:
            log.warning("config key '%s' is now '%s'; the old name goes in the next release",
                        old, new)
        new_section, new_leaf = new.split(".", 1)
        value = out[section].pop(leaf)
        target = out.setdefault(new_section, {})
        if not isinstance(target, dict):
            continue
        if new_leaf in target and target[new_leaf] != value:
            raise ConfigError(f"'{old}' ({value!r}) and '{new}' ({target[new_leaf]!r}) are the "
                              f"same setting under its old and new names; keep only '{new}'")
        target.setdefault(new_leaf, value)
    return out


def _apply(obj: Any, updates: dict[str, Any], prefix: str = "") -> None:
    if not prefix:
        updates = renamed(updates)
    types_ = field_types(type(obj))
    for key, value in updates.items():
        full = f"{prefix}{key}"
        if key not in types_:
            valid = [f"{prefix}{k}" for k in types_]
            raise ConfigError(f"unknown config key '{full}'{_closest(full, valid)}")
        tp = types_[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{full}: expected a mapping of {tp.__name__} keys")
            _apply(getattr(obj, key), value, prefix=f"{full}.")
        else:
            setattr(obj, key, _coerce(value, tp, full))


def parse_override(text: str) -> dict[str, Any]:
    """``"train.epochs=3"`` -> ``{"train": {"epochs": 3}}`` (the value is read as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value, e.g. train.epochs=3")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def preset_names() -> list[str]:
    """The packaged presets, by the name ``-c`` takes (``voc_irn``)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def find_config(path: str | Path) -> Path:
    """``path`` if it is a file, else the packaged preset it names: ``voc_irn``,
    ``voc_irn.yaml`` or ``configs/voc_irn.yaml`` (the presets' folder in a clone before they
    became package data). ConfigError listing the presets otherwise."""
    path = Path(path)
    if path.is_file():
        return path
    names = preset_names()
    as_name = path.parent in (Path("."), Path("configs")) and path.suffix in ("", ".yaml", ".yml")
    if as_name and path.stem in names:
        return PRESETS_DIR / f"{path.stem}.yaml"
    close = difflib.get_close_matches(path.stem, names, n=1) if as_name else []
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"config file {path} does not exist; the presets (-c NAME) are "
                      f"{', '.join(names)}{hint}")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file (or packaged preset) ``path``, then ``overrides``
    (``key=value`` strings); then :func:`validate`."""
    cfg = Config()
    if path is not None:
        path = find_config(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of config keys at the top level")
        try:
            _apply(cfg, data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    for text in overrides or []:
        _apply(cfg, parse_override(text))
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Every value against its declared choices (csdseg.config.sections), and the cross-field
    checks that types alone cannot express."""
    resolve_variant(cfg.csd)  # an unknown csd.variant or csd.masks, or an option contradicting it
    check_choices(cfg)
    if len(cfg.train.resize_long) != 2 or cfg.train.resize_long[0] > cfg.train.resize_long[1]:
        raise ConfigError("train.resize_long must be [min, max] with min <= max")
    if not cfg.cam.scales or any(s <= 0 for s in cfg.cam.scales):
        raise ConfigError("cam.scales must be a non-empty list of positive numbers")
    if cfg.train.batch_size < 1 or cfg.train.epochs < 0:
        raise ConfigError("train.batch_size must be >= 1 and train.epochs >= 0")


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically), so a run records what it used."""
    from csdseg.files.atomic import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
