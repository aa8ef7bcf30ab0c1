"""One convention for every command that writes a folder (``--out``).

* A new or empty folder is used as it is.
* A non-empty folder is refused unless ``--overwrite`` (or ``--resume`` where the command resumes), and the
  one-line error says which of the two applies.
* A failed run never blocks its retry: a folder whose only content is an unfinished run of the same command, with
  no checkpoint worth resuming, is reused without a flag (what that run left is the retry's to replace).
* No command deletes a file it did not write: ``--overwrite`` replaces the files the command writes and removes
  the run state of an earlier run of the same command (its checkpoints, its completion record), never anything
  else in the folder.

Each folder carries a small record, ``.indus-run.json``: the command that writes it, whether that run finished,
the process writing it (so a second process is refused while the first still runs), the indus version and the
command line. A run is *complete* once :meth:`OutputDir.complete` has rewritten it.

Example
-------
>>> import pathlib, tempfile
>>> folder = pathlib.Path(tempfile.mkdtemp()) / "run"
>>> out = prepare_output_dir(folder, command="pretrain", resumable=True)
>>> _ = (folder / "metrics.json").write_text("{}")  # write the outputs
>>> is_complete(folder, "metrics.json")
False
>>> out.complete()
>>> is_complete(folder, "metrics.json")
True
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from indus import __version__
from indus.atomic import atomic_write_json
from indus.errors import IndusError

MARKER = ".indus-run.json"

#: per command: the run state an earlier run of it leaves, removed before a new run writes there
#: (checkpoints would be resumed from, the completion files would declare the new run finished)
RUN_STATE: dict[str, tuple[str, ...]] = {
    "pretrain": ("checkpoints", "metrics.json", "log.jsonl", "loss_curve.png", ".final.tmp"),
    "distill": ("checkpoints", "metrics.json", "log.jsonl", "loss_curve.png", ".final.tmp"),
    "retriever train": ("checkpoints", "summary.json", ".model.tmp"),
    "retriever distill": ("checkpoints", "summary.json", ".model.tmp"),
}
#: names of checkpoint folders indus writes (encoder loop, sentence-transformers trainer)
CHECKPOINT_PREFIXES = ("step-", "checkpoint-", ".step-")


def command_line() -> str:
    """The command line of this process, as the user typed it (``indus ...`` for the CLI)."""
    argv = list(sys.argv)
    if argv and (Path(argv[0]).name in ("indus", "__main__.py")):
        argv = ["indus", *argv[1:]]
    return shlex.join(argv)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_flags(resume: bool, overwrite: bool) -> None:
    """The CLI's check that ``--resume`` and ``--overwrite`` are not both given."""
    if resume and overwrite:
        raise IndusError("--resume and --overwrite exclude each other: continue the run, or start it again")


def read_marker(path: str | Path) -> dict[str, Any] | None:
    """The ``.indus-run.json`` record of a folder, or ``None`` (absent or unreadable)."""
    file = Path(path) / MARKER
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def has_checkpoints(path: Path) -> bool:
    """Whether ``path/checkpoints`` holds a checkpoint folder (complete or not)."""
    root = path / "checkpoints"
    return root.is_dir() and any(p.is_dir() and p.name.startswith(CHECKPOINT_PREFIXES) for p in root.iterdir())


def _only_checkpoints(root: Path) -> bool:
    return all(p.is_dir() and p.name.startswith(CHECKPOINT_PREFIXES) for p in root.iterdir())


@dataclass
class OutputDir:
    """A prepared output folder: ``path`` plus what the preparation found there."""

    path: Path
    command: str
    resuming: bool

    def __fspath__(self) -> str:
        return str(self.path)

    def complete(self, **extra: Any) -> None:
        """Record that the run finished (main process only; call it after the last output is in place)."""
        if _rank() != 0:
            return
        record = read_marker(self.path) or {}
        record.update(
            {
                "command": self.command,
                "status": "complete",
                "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                **extra,
            }
        )
        atomic_write_json(self.path / MARKER, record)


def is_complete(path: str | Path, completion_file: str) -> bool:
    """Whether ``path`` holds a finished run: its record says so, or (a folder without a record) the command's
    completion file exists."""
    path = Path(path)
    record = read_marker(path)
    if record is not None:
        return record.get("status") == "complete" and (path / completion_file).is_file()
    return (path / completion_file).is_file()


def _clear_run_state(path: Path, command: str, same_command: bool) -> None:
    """Remove an earlier run's state before a new run of ``command`` writes into ``path``.

    Checkpoint folders are recognised by their names and removed whatever wrote the record (a stale newer
    checkpoint would otherwise be resumed from later, or outrank the new run's in the rotation); the other
    state files only when the record shows this command wrote them.
    """
    for staging in path.glob(".staging-*"):  # a crashed run's half-built outputs (see staging_dir)
        shutil.rmtree(staging, ignore_errors=True)
    for name in RUN_STATE.get(command, ()):
        entry = path / name
        if not entry.exists():
            continue
        if name == "checkpoints":
            if entry.is_dir() and _only_checkpoints(entry):
                shutil.rmtree(entry)
        elif same_command:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def prepare_output_dir(
    path: str | Path,
    *,
    command: str,
    resume: bool = False,
    overwrite: bool = False,
    resumable: bool = False,
    completion_file: str | None = None,
) -> OutputDir:
    """Check ``path`` against the convention (module docstring), create it and record the run in it.

    Parameters
    ----------
    path
        The output folder.
    command
        The command writing it, as the user types it after ``indus`` (``pretrain``, ``retriever index``...).
    resume
        ``--resume`` was given: continue the run in ``path`` (only for ``resumable`` commands).
    overwrite
        ``--overwrite`` was given: write into a non-empty folder.
    resumable
        Whether the command has ``--resume`` (the error then offers it).
    completion_file
        A file whose presence also means the run finished (for writers that do not call
        :meth:`OutputDir.complete`, e.g. an index whose ``meta.json`` lands last).

    Returns
    -------
    OutputDir
        The folder; call :meth:`OutputDir.complete` once the run has written everything.

    Raises
    ------
    IndusError
        A non-empty folder without the flag it needs, a path that is a file, a folder another live process is
        writing, or ``--resume`` into a folder of another command.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise IndusError(f"{path}: output path exists and is not a folder; choose another --out")
    if resume and not resumable:
        raise IndusError(f"indus {command} has no --resume; pass --overwrite to write into {path} again")
    overwrite = overwrite and not resume  # a caller that allows both (the pipeline) means: continue if possible
    if _rank() != 0:  # under a multi-process launch the main process checks and writes; the others would race it
        path.mkdir(parents=True, exist_ok=True)
        return OutputDir(path, command, resume)
    record = read_marker(path) if path.is_dir() else None
    entries = [p for p in path.iterdir() if p.name != MARKER] if path.is_dir() else []
    if record and record.get("status") == "running" and record.get("host") == socket.gethostname():
        pid = record.get("pid")
        if isinstance(pid, int) and pid != os.getpid() and _alive(pid):
            raise IndusError(
                f"{path}: another indus process (pid {pid}, `{record.get('argv', '?')}`) is writing "
                "this folder; wait for it or choose another --out"
            )
    same = bool(record) and record.get("command") == command
    if record and not same and entries and (resume or not overwrite):
        flag = "--overwrite to write into it anyway" if not resume else "another --out"
        raise IndusError(
            f"{path}: output folder is not empty (it holds an `indus {record.get('command')}` run, "
            f"not `indus {command}`); choose {flag}"
        )
    if entries and not (resume or overwrite):
        unfinished = (
            same and record.get("status") != "complete" and not (completion_file and (path / completion_file).is_file())
        )
        if unfinished and not has_checkpoints(path):
            _clear_run_state(path, command, same_command=True)  # a failed run's leftovers: the retry replaces them
        elif unfinished:
            raise IndusError(
                f"{path}: output folder is not empty (an unfinished `indus {command}` run with "
                "checkpoints); pass --resume to continue it or --overwrite to start again"
            )
        elif same:
            also = " or --resume to continue it (a finished run is returned as it is)" if resumable else ""
            raise IndusError(
                f"{path}: output folder is not empty (a finished `indus {command}` run); pass "
                f"--overwrite to replace it{also}"
            )
        else:
            raise IndusError(
                f"{path}: output folder is not empty ({len(entries)} entries indus did not write); "
                "pass --overwrite to write into it (files of the same names are replaced, the others "
                "kept) or choose another --out"
            )
    if overwrite and entries:
        _clear_run_state(path, command, same_command=same)
    path.mkdir(parents=True, exist_ok=True)
    record = {
        "command": command,
        "status": "running",
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "argv": command_line(),
        "indus_version": __version__,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic_write_json(path / MARKER, record)
    return OutputDir(path, command, resume)


def publish_directory(tmp: Path, out: Path) -> None:
    """Move every entry of the finished folder ``tmp`` into ``out`` (an entry of the same name is replaced, the
    folder's other files are left alone) and remove ``tmp``. A crash half-way leaves the run unfinished in its
    ``.indus-run.json`` record, so the retry replaces it."""
    out.mkdir(parents=True, exist_ok=True)
    for entry in sorted(tmp.iterdir(), key=lambda p: p.name == "README.md"):  # the card last
        target = out / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry, target)
    tmp.rmdir()


def staging_dir(out: Path) -> Path:
    """A fresh hidden folder inside ``out`` to build outputs in before :func:`publish_directory`."""
    out.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
