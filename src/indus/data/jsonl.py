"""JSON-lines reading with errors that name the file and line (plain or gzip-compressed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from indus.data.text import has_surrogate_escape, iter_lines, lone_surrogate, open_text
from indus.errors import DataFormatError

__all__ = ["iter_jsonl", "open_text"]


def iter_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; every object must hold ``required`` fields.

    Raises
    ------
    DataFormatError
        On invalid JSON, a line that is not an object, a missing field, bytes that are not UTF-8 or a corrupt
        gzip stream, naming file and line.
    """
    path = Path(path)
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(path, lineno, f"expected one JSON object per line ({exc.msg})") from None
        except RecursionError:
            raise DataFormatError(path, lineno, "expected one JSON object per line (nested too deeply)") from None
        if not isinstance(obj, dict):
            raise DataFormatError(path, lineno, f"expected a JSON object, found {type(obj).__name__}")
        if has_surrogate_escape(line) and (bad := lone_surrogate(obj)) is not None:
            raise DataFormatError(
                path,
                lineno,
                f"expected text, found the lone surrogate escape {bad} (not a "
                "character; a pair \\ud83d\\ude00 is fine)",
            )
        missing = [f for f in required if f not in obj]
        if missing:
            raise DataFormatError(
                path, lineno, f"missing field(s) {', '.join(missing)} (expected {', '.join(required)})"
            )
        yield lineno, obj
