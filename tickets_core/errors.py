"""The error types every layer raises: one-line messages, never a traceback for bad input."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad input: a configuration value, a file, a name (one-line message).

    ``param`` names the flat parameter at fault when there is one (the sweep
    uses it to point at the line of the sweep file that set it).
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param

    def _render_traceback_(self) -> list[str]:
        """IPython (notebooks, papermill) shows bad input as its one line, not as a traceback."""
        return [f"{type(self).__name__}: {self}"]


class RunStoreError(ConfigError):
    """A run folder, or one of its files, is missing, malformed or inconsistent (one-line message)."""
