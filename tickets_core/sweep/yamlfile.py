"""Sweep files as YAML: parsed with the line of every key, so errors can name it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class SweepError(ValueError):
    """The sweep file is invalid (one line, naming file and line)."""


def load_yaml(path: str | Path) -> tuple[Any, dict[tuple, int]]:
    """Parse ``path``; returns the data and the 1-based line of every key / list item by path.

    Duplicate keys are an error (plain YAML loaders keep the last silently).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SweepError(f"{path}: cannot read sweep file ({e.strerror})") from None
    loader = yaml.SafeLoader(text)
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
