"""The one error type for bad input: the CLI turns it into a one-line message and exit code 2."""

from __future__ import annotations


class CascadeError(Exception):
    """Bad input from the user (config, data file, option); the message must name the file, line or key."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


def warn(message: str, *, where: str | None = None) -> None:
    """A counted, non-fatal problem (e.g. split ids absent from a dataset): one line on stderr, work continues."""
    import sys

    print(f"cascade: warning: {where + ': ' if where else ''}{message}", file=sys.stderr, flush=True)
