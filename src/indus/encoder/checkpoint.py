"""Training checkpoints: safetensors weights plus optimizer, scheduler, RNG and loop state, verified on load.

A checkpoint is a folder ``checkpoints/step-000100/`` built under a temporary name and renamed when complete,
with a ``manifest.json`` of every file's size and SHA-256 written last. Resuming takes the newest checkpoint
whose manifest is present and matches (:func:`newest_complete_checkpoint`): a save cut short is skipped, and a
checkpoint damaged afterwards is refused with an error naming the file unless an older intact one exists. The
retriever's trainer checkpoints get the same manifest (:mod:`indus.retriever.trainer`).

Layout: ``model.safetensors`` (the unwrapped model, tied weights stored once), ``optimizer.pt``, ``state.pt``
(scheduler, step counters, the world size, python/numpy/torch RNG states of every rank), ``state.json`` (the same
counters, readable), ``config.yaml`` (the resolved config).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from indus.atomic import atomic_write_json, sha256_file
from indus.config import read_yaml
from indus.errors import IndusError

MANIFEST = "manifest.json"
PREFIX = "step-"


class CheckpointError(IndusError):
    """A checkpoint that is incomplete, truncated or corrupt."""


def rng_state() -> dict[str, Any]:
    """The python, numpy and torch (CPU and CUDA) random states, as plain lists and tensors."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": np_state["state"]["pos"],
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npd = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": npd["key"].numpy().astype(np.uint32), "pos": npd["pos"]},
            "has_gauss": npd["has_gauss"],
            "gauss": npd["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_manifest(folder: Path, fsync: bool = False, **extra: Any) -> None:
    """Record the size and SHA-256 of every file under ``folder`` (written last: its presence means complete).

    ``fsync`` flushes every file to disk first (for folders written by someone else, e.g. the Trainer), so the
    manifest never describes data still only in the page cache. ``extra`` entries are stored beside ``files``.
    """
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST and not p.name.endswith(".tmp"))
    if fsync:
        for p in paths:
            with p.open("rb") as fh:
                os.fsync(fh.fileno())
    files = {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in paths}
    atomic_write_json(folder / MANIFEST, {"files": files, **extra})


def verify(folder: Path) -> None:
    """Raise :class:`CheckpointError` unless every file listed in the manifest has its recorded size and hash."""
    manifest = folder / MANIFEST
    hint = "delete it to resume from an earlier checkpoint, or pass --overwrite to start again"
    if not manifest.is_file():
        raise CheckpointError(f"{folder}: incomplete checkpoint (no {MANIFEST}); {hint}")
    try:
        files = json.loads(manifest.read_text())["files"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise CheckpointError(f"{manifest}: unreadable manifest ({exc}); {hint}") from None
    for name, rec in files.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from checkpoint; {hint}")
        size = path.stat().st_size
        if size != rec["bytes"]:
            raise CheckpointError(f"{path}: truncated or altered ({size} bytes, manifest says {rec['bytes']}); {hint}")
        if sha256_file(path) != rec["sha256"]:
            raise CheckpointError(f"{path}: corrupt (SHA-256 does not match the manifest); {hint}")


def newest_complete_checkpoint(root: Path, dirs: list[Path] | None = None) -> Path | None:
    """The newest checkpoint under ``root`` that is complete and intact, or ``None`` when there is none.

    A folder without a manifest is a write that never finished (a crash or SIGKILL mid-save): it is skipped.
    A folder whose files do not match its manifest (damage after the fact) is skipped for an older intact one,
    with a warning; if every checkpoint is damaged, the first error is raised rather than silently starting over.
    ``dirs`` (oldest first) defaults to :func:`checkpoint_dirs`.
    """
    log = logging.getLogger(__name__)
    damaged: list[CheckpointError] = []
    for folder in reversed(checkpoint_dirs(root) if dirs is None else dirs):
        if not (folder / MANIFEST).is_file():
            log.warning("%s: incomplete checkpoint (a save that never finished); skipped", folder)
            continue
        try:
            verify(folder)
        except CheckpointError as exc:
            log.warning("%s; trying an older checkpoint", exc)
            damaged.append(exc)
            continue
        return folder
    if damaged:
        raise damaged[0]
    return None


def check_resume_settings(saved_path: Path, now: dict[str, Any], free: frozenset[str]) -> None:
    """Refuse to resume with settings that would change the loss curve (all but ``free``), naming them.

    ``saved_path`` is the config saved with the checkpoint being resumed; ``now`` the resolved config as a dict.
    Shared by the encoder loop and the retriever trainer.
    """
    if not saved_path.is_file():
        return
    saved = read_yaml(saved_path)
    diff = sorted(k for k in set(saved) | set(now) if k not in free and saved.get(k) != now.get(k))
    if diff:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in diff)
        raise IndusError(
            f"{saved_path}: --resume with settings that change the loss curve ({details}); use the "
            f"saved config, or --overwrite to start again"
        )


def check_world_size(checkpoint: Path, saved: int | None, world: int) -> None:
    """Refuse to resume a checkpoint written by ``saved`` processes on ``world`` processes.

    Each process (rank) reads its own share of the batches and has its own RNG stream, so another number of
    processes would not continue the same loss curve.
    """
    if saved is not None and saved != world:
        raise IndusError(
            f"{checkpoint}: written by a run on {saved} process{'es' if saved != 1 else ''}, this "
            f"launch has {world}; resume with {saved} (the batches and RNG streams are per process), "
            "or --overwrite to start again"
        )


def checkpoint_dirs(root: Path) -> list[Path]:
    """Checkpoint folders under ``root``, oldest first (temporary folders ignored)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def save_checkpoint(
    root: Path,
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    config_yaml: str,
    rng_states: list[dict[str, Any]],
    keep: int,
) -> Path:
    """Write ``root/step-<step>`` atomically and delete all but the newest ``keep`` checkpoints."""
    from safetensors.torch import save_model

    final = root / f"{PREFIX}{step:07d}"
    tmp = root / f".{final.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save({**state, "rng": rng_states}, tmp / "state.pt")
    (tmp / "state.json").write_text(json.dumps({k: v for k, v in state.items() if k != "scheduler"}, indent=2))
    (tmp / "config.yaml").write_text(config_yaml)
    write_manifest(tmp)
    for f in tmp.iterdir():  # data on disk before the rename makes the checkpoint visible
        with f.open("rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoint_dirs(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(folder: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Verify ``folder``, load the weights and optimizer in place and return the saved state (with ``rng``)."""
    from safetensors.torch import load_model

    verify(folder)
    load_model(model, str(folder / "model.safetensors"))
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    return torch.load(folder / "state.pt", weights_only=True)
