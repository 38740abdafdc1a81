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


def first_line(error: BaseException) -> str:
    """The first line of an error's message ("" when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def one_line(error: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    return first_line(error) or type(error).__name__


def run_cli(action, catch: tuple[type[BaseException], ...] = (ConfigError,)) -> int:
    """Run a command line's ``action``: print what it returns and exit 0, or print the error in one line
    (``error: ...`` on stderr) and exit 2 for the errors in ``catch``."""
    import sys

    try:
        message = action()
    except catch as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    if message:
        print(message)
    return 0
