"""Stages cached under a hash of their configuration and inputs.

A stage is a name, the settings that decide its output, the stages it reads from, and a function that writes its
output into a folder. Its key is a hash of the settings, the keys of its inputs and the indus version, so

- a second run finds ``stages/<name>/<key>/stage.json`` and skips the stage;
- a changed setting changes that stage's key and, through the input keys, the keys of every stage after it;
- a stage runs in ``stages/<name>/.<key>.partial`` and is renamed into place only when it succeeded, so a crash,
  a failure or Ctrl-C never leaves a half-written stage that a later run would take as finished. The partial
  folder is kept: a stage that can resume (pretraining from its last checkpoint) continues from it next time.

Example
-------
>>> import tempfile
>>> run = StageRunner(tempfile.mkdtemp())
>>> a = run.stage("numbers", {"n": 3}, lambda out, resume: {"total": 6})
>>> b = run.stage("numbers", {"n": 3}, lambda out, resume: {"total": -1})
>>> b.cached, b.summary["total"]
(True, 6)
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indus import __version__
from indus.atomic import atomic_write_json
from indus.config import config_hash
from indus.errors import IndusError

StageFn = Callable[[Path, bool], dict[str, Any]]


class StageError(IndusError):
    """A stage failed; earlier stages' results are intact."""

    def __init__(self, stage: str, log: Path, cause: BaseException) -> None:
        self.stage = stage
        self.log = log
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        super().__init__(f"stage '{stage}' failed: {first} (details: {log})")


@dataclass
class StageResult:
    """A finished stage: where its output is and what it reported."""

    name: str
    key: str
    path: Path
    summary: dict[str, Any]
    cached: bool
    wall_s: float
    inputs: list[str] = field(default_factory=list)


def _folder(name: str) -> str:
    return name.replace("/", "--").replace(":", "-").replace("@", "-")


class StageRunner:
    """Run stages into ``out_dir/stages``, skipping those whose key is already finished.

    Parameters
    ----------
    out_dir
        The run folder.
    force
        Names of stages to rerun even when finished (``"*"`` for all).
    log
        Called with one line per stage event (default: print).
    """

    def __init__(self, out_dir: str | Path, *, force: Sequence[str] = (),
                 log: Callable[[str], None] | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.force = set(force)
        self.log = log or print
        self.results: dict[str, StageResult] = {}

    def key(self, name: str, settings: Any, inputs: Sequence[StageResult] = ()) -> str:
        """The cache key of a stage: its settings, its inputs' keys and the indus version."""
        return config_hash(name, settings, sorted(f"{r.name}={r.key}" for r in inputs), __version__)

    def stage(self, name: str, settings: Any, fn: StageFn, inputs: Sequence[StageResult] = ()) -> StageResult:
        """Run (or reuse) stage ``name``; ``fn(out_dir, resume)`` writes into ``out_dir`` and returns a summary."""
        key = self.key(name, settings, inputs)
        folder = self.out_dir / "stages" / _folder(name)
        final = folder / key
        done = final / "stage.json"
        if done.is_file() and not ({name, "*"} & self.force):
            record = json.loads(done.read_text(encoding="utf-8"))
            result = StageResult(name, key, final, record["summary"], True, record["wall_s"], record["inputs"])
            self.log(f"[cached] {name} ({key})")
            self.results[name] = result
            return result
        partial = folder / f".{key}.partial"
        resume = partial.is_dir() and any(partial.iterdir())
        partial.mkdir(parents=True, exist_ok=True)
        self.log(f"[run]    {name} ({key}){' resuming' if resume else ''}")
        start = time.perf_counter()
        try:
            summary = fn(partial, resume)
        except BaseException as exc:
            log_path = self.out_dir / "logs" / f"{_folder(name)}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise StageError(name, log_path, exc) from exc
        wall = time.perf_counter() - start
        inputs_record = [f"{r.name}={r.key}" for r in inputs]
        atomic_write_json(partial / "stage.json", {"name": name, "key": key, "settings": settings,
                                                   "inputs": inputs_record, "summary": summary, "wall_s": wall})
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        self.log(f"[done]   {name} in {wall:.1f} s")
        result = StageResult(name, key, final, summary, False, wall, inputs_record)
        self.results[name] = result
        return result
