"""Run the real ``indus`` entry point in the test process (imported by tests; ``pythonpath = tests``)."""

from __future__ import annotations

import sys

import pytest

from indus.cli import main


def run_cli(args: list[str], capsys, out: list[str] | None = None) -> tuple[int, str]:
    """``indus ARGS``: ``(exit code, stderr)``; stdout is appended to ``out`` when given."""
    saved, sys.argv = sys.argv, ["indus", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    captured = capsys.readouterr()
    if out is not None:
        out.append(captured.out)
    return code, captured.err


def invoke(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``indus ARGS``, which must end through ``SystemExit``: ``(exit code, stdout, stderr)``."""
    monkeypatch.setattr(sys, "argv", ["indus", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err
