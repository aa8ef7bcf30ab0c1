"""Atomic writes: a crash or Ctrl-C never leaves a half-written output behind.

Files are written to a temporary sibling and moved into place with ``os.replace`` (atomic on POSIX);
directories are built under a temporary sibling name and renamed when complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs should be readable like any other
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_json(path: str | Path, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory whose contents land in ``path`` only when the block succeeds.

    A new or empty ``path`` is replaced in one rename (all or nothing). A non-empty one (only with ``overwrite``)
    gets the new entries moved in one by one: an entry of the same name is replaced, every other file in it is
    left alone, because a command never deletes a file it did not write. Commands that write a user's ``--out``
    folder check it first with :mod:`indus.outdir`, whose run record tells a crash mid-move from a finished run.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; outputs should be readable like any other
    try:
        yield tmp
        if path.is_dir() and any(path.iterdir()):
            if not overwrite:
                raise FileExistsError(f"{path} already exists and is not empty")
            for entry in sorted(tmp.iterdir()):
                target = path / entry.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                os.replace(entry, target)
        else:
            if path.is_dir():
                path.rmdir()
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (model cards, checkpoint manifests)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


DIGEST_MEMO_ENTRIES = 20_000  # the memo keeps the most recent digests


def indus_cache() -> Path:
    """Where indus keeps its caches (digests, tokenised corpora, embeddings): ``$INDUS_CACHE``, else
    ``~/.cache/indus``."""
    return Path(os.environ.get("INDUS_CACHE") or Path.home() / ".cache" / "indus").expanduser()


def _digest_memo_file() -> Path:
    return indus_cache() / "digests.json"


_digest_memo: dict[str, str] | None = None


def content_digests(paths: Sequence[str | Path]) -> list[str]:
    """SHA-256 of each file's bytes (the first 16 hex digits), memoised by (absolute path, size, modification time)
    in ``$INDUS_CACHE/digests.json`` (else ``~/.cache/indus``), written once per call: a file is read again only
    when it changes, and a copy of it, or the same file touched, has the same digest. An unwritable memo only costs
    re-reading."""
    global _digest_memo
    if _digest_memo is None:
        try:
            loaded = json.loads(_digest_memo_file().read_text(encoding="utf-8"))
            _digest_memo = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            _digest_memo = {}
    out, added = [], False
    for path in map(Path, paths):
        st = path.stat()
        memo_key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        if memo_key not in _digest_memo:
            _digest_memo[memo_key], added = sha256_file(path)[:16], True
        out.append(_digest_memo[memo_key])
    if added:
        while len(_digest_memo) > DIGEST_MEMO_ENTRIES:
            _digest_memo.pop(next(iter(_digest_memo)))
        with contextlib.suppress(OSError):
            atomic_write_json(_digest_memo_file(), _digest_memo, indent=0)
    return out
