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

**Freshness across processes.** Every process of one launch shares a *run token* (rank 0 draws it and sends it to
the others over the launcher's process group); the main process writes it into each ``stage.json`` it finishes and
into a failure marker. A waiting process takes a forced stage's result, or a failure, only when it carries this
launch's token, so an older result or failure is never mistaken for this one, whatever the clocks of the hosts on a
shared file system say.

Example
-------
>>> import tempfile
>>> run = StageRunner(tempfile.mkdtemp())
>>> a = run.stage("numbers", {"n": 3}, lambda out, resume: {"total": 6})  # doctest: +ELLIPSIS
[run]    numbers (...)
[done]   numbers in ... s
>>> b = run.stage("numbers", {"n": 3}, lambda out, resume: {"total": -1})  # doctest: +ELLIPSIS
[cached] numbers (...)
>>> b.cached, b.summary["total"]
(True, 6)
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indus import __version__
from indus.atomic import atomic_write_json
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


def stage_key(name: str, settings: Any, inputs: Sequence[Any] = ()) -> str:
    """The cache key of a stage: its settings, its inputs' keys (anything with ``name`` and ``key``) and the indus
    version."""
    return config_hash(name, settings, sorted(f"{r.name}={r.key}" for r in inputs), __version__)


def stage_path(out_dir: str | Path, name: str, key: str) -> Path:
    """The folder a finished stage occupies: ``out_dir/stages/<name>/<key>``."""
    return Path(out_dir) / "stages" / _folder(name) / key


def launch_token(world: int) -> str:
    """A token that every process of this launch shares and no other launch has.

    One process: a fresh random token. Several: rank 0's, sent to the others over the launcher's process group
    (joined through accelerate, as the training stages join it).
    """
    token = uuid.uuid4().hex
    if world <= 1:
        return token
    import torch
    import torch.distributed as dist
    from accelerate import PartialState

    PartialState(cpu=not torch.cuda.is_available())  # the same group the training loops use
    box = [token]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


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
    token
        This launch's run token, the same on every process (default: :func:`launch_token`).
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        force: Sequence[str] = (),
        log: Callable[[str], None] | None = None,
        rank: int | None = None,
        world: int | None = None,
        poll_s: float = 5.0,
        token: str | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.force = set(force)
        self.log = log or print
        self.results: dict[str, StageResult] = {}
        env_rank, env_world = launcher_rank()
        self.rank = env_rank if rank is None else rank
        self.world = env_world if world is None else world
        self.poll_s = poll_s
        self.token = token or launch_token(self.world)

    @property
    def is_main(self) -> bool:
        """Whether this process writes stage results (rank 0)."""
        return self.rank == 0

    def key(self, name: str, settings: Any, inputs: Sequence[StageResult] = ()) -> str:
        """The cache key of a stage: its settings, its inputs' keys and the indus version."""
        return stage_key(name, settings, inputs)

    def _read(self, name: str, key: str, final: Path, cached: bool) -> StageResult:
        record = json.loads((final / "stage.json").read_text(encoding="utf-8"))
        result = StageResult(name, key, final, record["summary"], cached, record["wall_s"], record["inputs"])
        self.results[name] = result
        return result

    def _token_of(self, path: Path) -> str | None:
        """The run token a ``stage.json`` or failure marker carries (``None``: absent, unreadable or older)."""
        try:
            return json.loads(path.read_text(encoding="utf-8")).get("run")
        except (OSError, ValueError, AttributeError):
            return None

    def _wait(self, name: str, key: str, final: Path, failed: Path, fresh: bool) -> StageResult:
        """A non-main process: wait until the main process has finished (or failed) stage ``name`` in this launch;
        ``fresh``: only a ``stage.json`` with this launch's token counts (a forced stage's old result does not)."""
        done = final / "stage.json"
        while not (done.is_file() and (not fresh or self._token_of(done) == self.token)):
            if failed.is_file() and self._token_of(failed) == self.token:
                error = json.loads(failed.read_text(encoding="utf-8"))["error"]
                raise IndusError(f"stage '{name}' failed on the main process: {error}")
            time.sleep(self.poll_s)
        return self._read(name, key, final, False)

    def stage(
        self, name: str, settings: Any, fn: StageFn, inputs: Sequence[StageResult] = (), *, collective: bool = False
    ) -> StageResult:
        """Run (or reuse) stage ``name``; ``fn(out_dir, resume)`` writes into ``out_dir`` and returns a summary.

        ``collective``: with several processes, every process calls ``fn`` (a training loop that goes through
        accelerate); otherwise only the main process does and the others wait for its result.
        """
        key = self.key(name, settings, inputs)
        final = stage_path(self.out_dir, name, key)
        folder = final.parent
        done = final / "stage.json"
        failed = folder / f".{key}.failed"
        forced = bool({name, "*"} & self.force)
        if done.is_file() and not forced:
            self.log(f"[cached] {name} ({key})")
            return self._read(name, key, final, True)
        if not self.is_main and not collective:
            self.log(f"[wait]   {name} ({key}) on the main process")
            return self._wait(name, key, final, failed, forced)
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
                atomic_write_json(
                    failed, {"run": self.token, "error": f"{type(exc).__name__}: {exc} (details: {log_path})"}
                )
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise StageError(name, log_path, exc) from exc
        if not self.is_main:
            return self._wait(name, key, final, failed, forced)
        wall = time.perf_counter() - start
        inputs_record = [f"{r.name}={r.key}" for r in inputs]
        # the settings and inputs stay in the record: a dry run diffs a changed stage against them
        atomic_write_json(
            partial / "stage.json",
            {
                "name": name,
                "key": key,
                "settings": settings,
                "inputs": inputs_record,
                "summary": summary,
                "wall_s": wall,
                "run": self.token,
                "finished": time.time(),
                "indus_version": __version__,
            },
        )
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        failed.unlink(missing_ok=True)
        self.log(f"[done]   {name} in {wall:.1f} s")
        result = StageResult(name, key, final, summary, False, wall, inputs_record)
        self.results[name] = result
        return result
