"""Field metadata for the config dataclasses, and the checks every field gets from it.

A config field is declared once, with :func:`param`: its default, help text,
and whether it changes results (``hashed``), names a file or folder
(``path``), takes one of a few values (``choices``), has a shorter flat name
(``flat``), or is set by tickets_core itself (``internal``, never a
parameter).  From that one declaration come: the type and choice checks of
every config (:func:`check_fields`), the flat parameter names notebooks and
sweeps use (:func:`flat_params`), the notebooks' parameters cell, the sweep's
path handling, the run-folder hash, and the help (:func:`describe`).

Imports nothing else from tickets_core but its errors.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ConfigError

_NO_DEFAULT = dataclasses.MISSING
#: A number written as text where a float is expected: ``3e-4``, ``1.5``, ``-2E+3`` (YAML 1.1 reads ``3e-4`` as a
#: string; so do papermill's raw parameters).
FLOAT_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def param(default: Any = _NO_DEFAULT, *, help: str, factory: Any = _NO_DEFAULT, hashed: bool = True,
          path: bool = False, choices: tuple | None = None, flat: str | None = None, internal: bool = False,
          hash_as: str | None = None):
    """A dataclass field with its metadata (see the module docstring).

    ``hash_as="name"`` hashes only the last component of a path-like value
    (a source run is identified by its run name, wherever its folder lies).
    """
    meta = {"help": help, "hashed": hashed, "path": path, "choices": choices, "flat": flat,
            "internal": internal, "hash_as": hash_as}
    if factory is not _NO_DEFAULT:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Param:
    """One flat parameter: ``name`` as notebooks and sweeps write it, and where it lives in the config."""

    name: str
    section: str | None        # None: a field of RunConfig itself
    field: str
    hint: Any
    default: Any
    help: str
    hashed: bool
    path: bool
    choices: tuple | None

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.field}" if self.section else self.field

    def value(self, cfg: Any) -> Any:
        """This parameter's value in the root config ``cfg``."""
        return getattr(getattr(cfg, self.section) if self.section else cfg, self.field)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not _NO_DEFAULT:
        return f.default
    if f.default_factory is not _NO_DEFAULT:
        return f.default_factory()
    return None


@functools.cache
def _hints(cls) -> dict[str, Any]:
    """``cls``'s resolved field types (cached: every config built runs :func:`check_fields`; do not mutate)."""
    return typing.get_type_hints(cls)


def _param(f: dataclasses.Field, hint: Any, section: str | None) -> Param:
    m = f.metadata
    return Param(m.get("flat") or f.name, section, f.name, hint, _default(f), m.get("help", ""),
                 m.get("hashed", True), m.get("path", False), m.get("choices"))


def flat_params(root_cls, sections: dict[str, type]) -> dict[str, Param]:
    """Every flat parameter of ``root_cls`` and its section dataclasses, in declaration order.

    Flat names are the field names (or their ``flat`` alias); they must be
    unique across sections, which this checks.
    """
    found: list[Param] = []
    root_hints = _hints(root_cls)
    for f in fields(root_cls):
        if f.name in sections:
            hints = _hints(sections[f.name])
            found += [_param(g, hints[g.name], f.name) for g in fields(sections[f.name])
                      if not g.metadata.get("internal")]
        elif not f.metadata.get("internal"):
            found.append(_param(f, root_hints[f.name], None))
    out = {p.name: p for p in found}
    if len(out) != len(found):
        raise TypeError("two config fields share a flat parameter name")
    return out


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------


def type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(type_name(a) for a in inner) + " or None"
    if origin is list:
        return f"a list of {type_name(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            dict: "a mapping"}.get(origin or hint, getattr(hint, "__name__", str(hint)))


def coerce(name: str, value: Any, hint: Any) -> Any:
    """``value`` checked against the type ``hint`` (ints widen to floats); a mismatch is a :class:`ConfigError`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in (a for a in args if a is not type(None)):
            try:
                return coerce(name, value, a)
            except ConfigError:
                pass
        raise ConfigError(f"{name} must be {type_name(hint)}, got {value!r}", param=name)
    if origin is list or hint is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be {type_name(hint)}, got {value!r}", param=name)
        return [coerce(name, v, args[0]) for v in value] if args else list(value)
    if origin is dict or hint is dict:
        ok = isinstance(value, dict)
    elif hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        if isinstance(value, str) and FLOAT_TEXT.fullmatch(value.strip()):
            value = float(value)  # "3e-4": PyYAML, papermill's -r/-y and command lines give numbers as text
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    else:  # nested dataclasses are built by their owner
        return value
    if not ok:
        raise ConfigError(f"{name} must be {type_name(hint)}, got {value!r}", param=name)
    return value


def check_fields(obj) -> None:
    """Type- and choice-check every field of the dataclass instance ``obj`` in place (``__post_init__``)."""
    hints = _hints(type(obj))
    for f in fields(obj):
        name = f.metadata.get("flat") or f.name
        value = coerce(name, getattr(obj, f.name), hints[f.name])
        choices = f.metadata.get("choices")
        if choices is not None and value is not None and value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}", param=name)
        object.__setattr__(obj, f.name, value)


def require(ok: bool, name: str, message: str) -> None:
    """Raise a one-line :class:`ConfigError` about parameter ``name`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{name} {message}", param=name)


# ---------------------------------------------------------------------------
# Hashing and help
# ---------------------------------------------------------------------------


def hashed_view(obj: Any) -> Any:
    """The parts of a config that change results, as the run hash sees them.

    Fields with ``hashed=False`` are left out, and so is every field at its
    default value (the way open_lth names runs): a parameter added in a later
    version, at its default, leaves every existing run's name as it was.  The
    flip side: changing a default changes what existing names mean, so
    defaults are pinned by a test (tests/test_config.py).
    """
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in fields(obj):
            value = getattr(obj, f.name)
            if not f.metadata.get("hashed", True):
                continue
            if not dataclasses.is_dataclass(value) and value == _default(f):
                continue
            if f.metadata.get("hash_as") == "name" and isinstance(value, str):
                value = value.rstrip("/").rsplit("/", 1)[-1]
            view = hashed_view(value)
            if view != {}:
                out[f.name] = view
        return out
    if isinstance(obj, dict):
        return {str(k): hashed_view(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [hashed_view(v) for v in obj]
    return obj


def describe(cls) -> str:
    """Human-readable help for every field of a config dataclass: ``name = default: help``."""
    lines = []
    for f in fields(cls):
        if f.metadata.get("internal"):
            continue
        default = _default(f)
        if dataclasses.is_dataclass(default):
            default = type(default).__name__ + "()"
        name = f.metadata.get("flat") or f.name
        lines.append(f"{name} = {default!r}: {f.metadata.get('help', '')}")
    return "\n".join(lines)



def from_dict(cls, d: dict, prefix: str = ""):
    """Build dataclass ``cls`` from a (possibly nested) dict; unknown keys are an error."""
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__} must be a mapping, got {type(d).__name__}")
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"unknown config key {prefix + unknown[0]!r}", param=unknown[0])
    return cls(**d)
