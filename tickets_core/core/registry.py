"""The one registry helper: names -> entries of one sort (run kinds, tasks, heads, strategies, level functions).

A :class:`Registry` is a dict that refuses a name registered twice and
whose :meth:`~Registry.lookup` turns an unknown name into a one-line
:class:`~tickets_core.core.errors.ConfigError` that names the closest known
name, so a typo in a notebook parameter or a sweep file reads
``unknown task 'rotten_tomato'; did you mean 'rotten_tomatoes'? (known: ...)``.
:func:`unknown` builds that message for lookups that are not registries
(parameter names).  Torch-free.
"""

from __future__ import annotations

import difflib
from typing import Callable, Iterable, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def closest(name: object, known: Iterable[str]) -> str | None:
    """The known name closest to ``name`` (difflib ratio >= 0.6), or None."""
    if not isinstance(name, str):
        return None
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return match[0] if match else None


def unknown(what: str, name: object, known: Iterable[str], *, param: str | None = None,
            error: type[ConfigError] = ConfigError, listing: bool = True) -> ConfigError:
    """``unknown <what> 'x'; did you mean 'y'? (known: a, b, c)`` as a one-line error (to raise)."""
    known = list(known)
    guess = closest(name, known)
    msg = f"unknown {what} {name!r}"
    if guess is not None:
        msg += f"; did you mean {guess!r}?"
    if listing:
        msg += f" (known: {', '.join(known)})" if guess is not None else f"; known: {', '.join(known)}"
    return error(msg, param=param)


class Registry(dict[str, T]):
    """Entries of one sort by name (see the module docstring).

    ``what`` names the sort in errors ("task", "run kind"); ``param`` is the
    configuration parameter an unknown name is blamed on; ``error`` the
    :class:`ConfigError` subclass raised.
    """

    def __init__(self, what: str, *, param: str | None = None, error: type[ConfigError] = ConfigError) -> None:
        super().__init__()
        self.what, self.param, self.error = what, param, error

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; a name registered twice is a programming error (ValueError)."""
        if name in self:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@REGISTRY.decorator("name")`` registers the decorated function."""
        return lambda entry: self.register(name, entry)

    def lookup(self, name: str) -> T:
        """The entry ``name``; an unknown name is a one-line error naming the closest known one."""
        try:
            return self[name]
        except (KeyError, TypeError):
            raise unknown(self.what, name, self, param=self.param, error=self.error) from None
