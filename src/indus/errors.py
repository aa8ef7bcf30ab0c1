"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

from pathlib import Path


class IndusError(Exception):
    """A problem with the user's input (a path, a name, an option), reported without a traceback."""


class DataFormatError(IndusError):
    """A data file that does not match its format.

    Parameters
    ----------
    path
        The offending file.
    line
        1-based line number, or ``None`` when the problem is not tied to a line.
    expected
        What the reader expected to find, in words.
    """

    def __init__(self, path: str | Path, line: int | None, expected: str) -> None:
        self.path = Path(path)
        self.line = line
        self.expected = expected
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {expected}")
