"""JSON-lines reading with errors that name the file and line (plain or gzip-compressed)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from indus.errors import DataFormatError, IndusError


def open_text(path: str | Path) -> TextIO:
    """Open a text file for reading, transparently decompressing ``.gz``."""
    path = Path(path)
    if not path.is_file():
        raise IndusError(f"{path}: file not found")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def iter_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; every object must hold ``required`` fields.

    Raises
    ------
    DataFormatError
        On invalid JSON, a line that is not an object, or a missing field, naming file and line.
    """
    path = Path(path)
    with open_text(path) as fh:
        try:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataFormatError(path, lineno, f"expected one JSON object per line ({exc.msg})") from None
                if not isinstance(obj, dict):
                    raise DataFormatError(path, lineno, f"expected a JSON object, found {type(obj).__name__}")
                missing = [f for f in required if f not in obj]
                if missing:
                    raise DataFormatError(path, lineno, f"missing field(s) {', '.join(missing)} "
                                                        f"(expected {', '.join(required)})")
                yield lineno, obj
        except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, OSError) as exc:
            raise DataFormatError(path, None, f"could not read as UTF-8 JSON lines ({exc})") from None
