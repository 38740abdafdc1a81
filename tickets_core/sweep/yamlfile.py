"""Sweep files as YAML: parsed with the line of every key, so errors can name it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import re

import yaml

from ..core.fsio import read_text


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading numbers as YAML 1.2 does: ``3e-4`` is a float (YAML 1.1, PyYAML's default,
    needs ``3.0e-4`` and reads ``3e-4`` as a string)."""


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"))


class SweepError(ValueError):
    """The sweep file is invalid (one line, naming file and line)."""


def load_yaml(path: str | Path) -> tuple[Any, dict[tuple, int]]:
    """Parse ``path``; returns the data and the 1-based line of every key / list item by path.

    Duplicate keys are an error (plain YAML loaders keep the last silently).
    """
    path = Path(path)
    try:
        text = read_text(path, error=SweepError)  # a byte that is not UTF-8: one line naming file and line
    except OSError as e:
        raise SweepError(f"{path}: cannot read sweep file ({e.strerror})") from None
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SweepError(f"{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    finally:
        loader.dispose()
    lines: dict[tuple, int] = {}

    def walk(n: yaml.Node, at: tuple) -> None:
        lines.setdefault(at, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            seen: set = set()
            for k, v in n.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else str(k.value)
                if key in seen:
                    raise SweepError(f"{path}:{k.start_mark.line + 1}: duplicate key {key!r}")
                seen.add(key)
                lines[at + (key,)] = k.start_mark.line + 1
                walk(v, at + (key,))
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                walk(v, at + (i,))

    if node is not None:
        walk(node, ())
    return data, lines


class SweepFile:
    """A parsed sweep file and the checks of its shapes, each error naming the line that set the value.

    ``at`` is a key path into the file (``("trunks", 0, "tasks")``); an error at a path the file does not
    have is reported at its closest ancestor's line.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.data, self.lines = load_yaml(self.path)

    def error(self, at: tuple, msg: str) -> SweepError:
        while at and at not in self.lines:
            at = at[:-1]
        return SweepError(f"{self.path}:{self.lines.get(at, 1)}: {msg}")

    def mapping(self, value: Any, at: tuple, what: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(at, f"{what} must be a mapping, got {type(value).__name__}")
        return value

    def listing(self, value: Any, at: tuple, what: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(at, f"{what} must be a list, got {type(value).__name__}")
        return value

    def names(self, entry: dict, key: str, at: tuple, *, what: str | None = None,
              known: Any = None) -> list:
        """``entry[key]``: a name (or integer seed) or a list of them, checked; ``known``: a
        :class:`~tickets_core.core.registry.Registry` the names must be in (its lookup error, at the line)."""
        value, what = entry[key], what or key
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.error(at + (key,), f"{what} is empty")
        for i, item in enumerate(items):
            where = at + (key, i) if isinstance(value, list) else at + (key,)
            if what.startswith("seed") or what == "trunk_seed":
                if not isinstance(item, int) or isinstance(item, bool):
                    raise self.error(where, f"{what} must be integers, got {item!r}")
            elif not isinstance(item, str):
                raise self.error(where, f"{what} must be names, got {item!r}")
            if known is not None and item not in known:
                try:
                    known.lookup(item)
                except ValueError as e:
                    raise self.error(where, str(e)) from None
        return items
