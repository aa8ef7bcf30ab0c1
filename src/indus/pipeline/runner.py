"""Stages cached under a hash of their configuration and inputs.

A stage is a name, the settings that decide its output, the stages it reads from, and a function that writes its
output into a folder. Its key is a hash of the settings, the keys of its inputs and the indus version, so

- a second run finds ``stages/<name>/<key>/stage.json`` and skips the stage;
- a changed setting changes that stage's key and, through the input keys, the keys of every stage after it;
- a stage runs in ``stages/<name>/.<key>.partial`` and is renamed into place only when it succeeded, so a crash,
  a failure or Ctrl-C never leaves a half-written stage that a later run would take as finished. The partial
  folder is kept: a stage that can resume (pretraining from its last checkpoint) continues from it next time.

**Many processes** (``accelerate launch -m indus run ...`` or ``torchrun ... -m indus run ...``, on a shared file
system). Every process runs the pipeline; the rank and world size come from the launcher's ``RANK`` and
``WORLD_SIZE``. A *collective* stage (the training stages, whose loops go through accelerate) runs on every
process; any other stage (tokenizer, evaluations, report) runs on the main process only, while the others wait for
its ``stage.json`` (or its failure marker) on the file system, so no collective timeout limits how long it may
take. Only the main process writes ``stage.json`` and renames the partial folder into place.

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
from indus.atomic import atomic_write_json, atomic_write_text
from indus.config import config_hash, launcher_rank
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
    rank, world
        This process's rank and the number of processes (default: the launcher's ``RANK`` and ``WORLD_SIZE``).
    poll_s
        How often a waiting process looks for the main process's result.
    """

    def __init__(self, out_dir: str | Path, *, force: Sequence[str] = (),
                 log: Callable[[str], None] | None = None, rank: int | None = None, world: int | None = None,
                 poll_s: float = 5.0) -> None:
        self.out_dir = Path(out_dir)
        self.force = set(force)
        self.log = log or print
        self.results: dict[str, StageResult] = {}
        env_rank, env_world = launcher_rank()
        self.rank = env_rank if rank is None else rank
        self.world = env_world if world is None else world
        self.poll_s = poll_s

    @property
    def is_main(self) -> bool:
        """Whether this process writes stage results (rank 0)."""
        return self.rank == 0

    def key(self, name: str, settings: Any, inputs: Sequence[StageResult] = ()) -> str:
        """The cache key of a stage: its settings, its inputs' keys and the indus version."""
        return config_hash(name, settings, sorted(f"{r.name}={r.key}" for r in inputs), __version__)

    def _read(self, name: str, key: str, final: Path, cached: bool) -> StageResult:
        record = json.loads((final / "stage.json").read_text(encoding="utf-8"))
        result = StageResult(name, key, final, record["summary"], cached, record["wall_s"], record["inputs"])
        self.results[name] = result
        return result

    def _wait(self, name: str, key: str, final: Path, failed: Path, since: float, fresh: bool) -> StageResult:
        """A non-main process: wait until the main process has finished (or failed) stage ``name``; ``fresh``:
        a ``stage.json`` written before ``since`` (a forced stage's old result) does not count."""
        done = final / "stage.json"
        while not (done.is_file() and (not fresh or done.stat().st_mtime >= since)):
            if failed.is_file() and failed.stat().st_mtime >= since:
                raise IndusError(f"stage '{name}' failed on the main process: "
                                 f"{failed.read_text(encoding='utf-8').strip()}")
            time.sleep(self.poll_s)
        return self._read(name, key, final, False)

    def stage(self, name: str, settings: Any, fn: StageFn, inputs: Sequence[StageResult] = (), *,
              collective: bool = False) -> StageResult:
        """Run (or reuse) stage ``name``; ``fn(out_dir, resume)`` writes into ``out_dir`` and returns a summary.

        ``collective``: with several processes, every process calls ``fn`` (a training loop that goes through
        accelerate); otherwise only the main process does and the others wait for its result.
        """
        key = self.key(name, settings, inputs)
        folder = self.out_dir / "stages" / _folder(name)
        final = folder / key
        done = final / "stage.json"
        failed = folder / f".{key}.failed"
        forced = bool({name, "*"} & self.force)
        if done.is_file() and not forced:
            self.log(f"[cached] {name} ({key})")
            return self._read(name, key, final, True)
        since = time.time() - 1.0
        if not self.is_main and not collective:
            self.log(f"[wait]   {name} ({key}) on the main process")
            return self._wait(name, key, final, failed, since, forced)
        partial = folder / f".{key}.partial"
        resume = partial.is_dir() and any(partial.iterdir())
        partial.mkdir(parents=True, exist_ok=True)
        self.log(f"[run]    {name} ({key}){' resuming' if resume else ''}")
        start = time.perf_counter()
        try:
            summary = fn(partial, resume)
        except BaseException as exc:
            log_path = self.out_dir / "logs" / f"{_folder(name)}{'' if self.is_main else f'.rank{self.rank}'}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
            if self.is_main and self.world > 1:
                atomic_write_text(failed, f"{type(exc).__name__}: {exc} (details: {log_path})\n")
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise StageError(name, log_path, exc) from exc
        if not self.is_main:
            return self._wait(name, key, final, failed, since, forced)
        wall = time.perf_counter() - start
        inputs_record = [f"{r.name}={r.key}" for r in inputs]
        atomic_write_json(partial / "stage.json", {"name": name, "key": key, "settings": settings,
                                                   "inputs": inputs_record, "summary": summary, "wall_s": wall})
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        failed.unlink(missing_ok=True)
        self.log(f"[done]   {name} in {wall:.1f} s")
        result = StageResult(name, key, final, summary, False, wall, inputs_record)
        self.results[name] = result
        return result
