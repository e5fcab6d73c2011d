"""The settings with a fixed set of values, and the check that a loaded config keeps to them.

The allowed values are declared once, in the annotations of :mod:`csdseg.config.sections`.
A registry-backed setting (``model.name``, ``seg.model``, ``irn.backbone``, the CRF presets)
takes the registry's keys, read from the source of the module that holds it, so loading a
config imports no torch; a registry the caller has already imported is read live.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import importlib
import re
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from csdseg.config.sections import Config, ConfigError, Pattern, Registry


def field_types(cls: type) -> dict[str, Any]:
    """Field name -> annotation (``Literal`` and ``Annotated`` kept)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _source_keys(module: str, name: str) -> tuple[Any, ...] | None:
    """The keys of a dict literal (or the items of a tuple / list literal) assigned to ``name``
    at the top level of ``module`` (a module of csdseg), without importing it; None if the
    source is not there or ``name`` is not such a literal."""
    import csdseg

    parts = module.split(".")
    if parts[0] != "csdseg":
        return None
    base = Path(csdseg.__file__).resolve().parent.joinpath(*parts[1:])
    path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            items = (node.value.keys if isinstance(node.value, ast.Dict) else
                     node.value.elts if isinstance(node.value, (ast.Tuple, ast.List)) else None)
            if items is None or not all(isinstance(k, ast.Constant) for k in items):
                return None
            return tuple(k.value for k in items)
    return None


@functools.lru_cache(maxsize=None)
def _registry_from_source(module: str, name: str) -> tuple[Any, ...]:
    keys = _source_keys(module, name)
    if keys is None:  # not a literal: import it after all
        keys = tuple(getattr(importlib.import_module(module), name))
    return keys


def registry_keys(registry: Registry) -> tuple[Any, ...]:
    """The allowed values of a registry-backed setting."""
    loaded = sys.modules.get(registry.module)
    if loaded is not None and hasattr(loaded, registry.name):
        return tuple(getattr(loaded, registry.name))
    return _registry_from_source(registry.module, registry.name)


def allowed_values(tp: Any) -> tuple[Any, ...] | Pattern | None:
    """What a setting annotated ``tp`` may hold: its values, a :class:`Pattern`, or None (any
    value of its type)."""
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    if typing.get_origin(tp) is Annotated:
        for meta in tp.__metadata__:
            if isinstance(meta, Registry):
                return registry_keys(meta)
            if isinstance(meta, Pattern):
                return meta
    return None


def choice_keys(cls: type = Config, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, annotation) of every setting with declared values, in declaration order."""
    for name, tp in field_types(cls).items():
        if dataclasses.is_dataclass(tp):
            yield from choice_keys(tp, f"{prefix}{name}.")
        elif typing.get_origin(tp) in (Literal, Annotated):
            yield f"{prefix}{name}", tp


def _show(value: Any) -> str:
    return '""' if value == "" else str(value)


def _listing(values: tuple[Any, ...]) -> str:
    shown = [_show(v) for v in values]
    return " or ".join(shown) if len(shown) == 2 else "one of " + ", ".join(shown)


def check_value(key: str, value: Any, tp: Any) -> None:
    """ConfigError naming ``key`` and listing its allowed values, unless ``value`` is one."""
    spec = allowed_values(tp)
    if spec is None:
        return
    if isinstance(spec, Pattern):
        if not (isinstance(value, str) and re.fullmatch(spec.regex, value.strip(), re.I)):
            raise ConfigError(f"{key} must be {spec.text}, got '{value}'")
        return
    if any(type(value) is type(v) and value == v for v in spec):
        return
    got = f"'{value}'" if isinstance(value, str) else repr(value)
    named = [v for v in spec if isinstance(v, str) and v]
    close = difflib.get_close_matches(value, named, n=1) if isinstance(value, str) else []
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"{key} must be {_listing(spec)}, got {got}{hint}")


def check_choices(cfg: Config) -> None:
    """Every setting with declared values holds one of them (ConfigError otherwise)."""
    for key, tp in choice_keys():
        obj: Any = cfg
        for part in key.split("."):
            obj = getattr(obj, part)
        check_value(key, obj, tp)
