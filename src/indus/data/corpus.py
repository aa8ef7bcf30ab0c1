"""Pretraining corpora: JSON lines with a ``text`` field (optionally gzip-compressed) or plain text files.

In plain text every non-blank line is one text unit (as the Hugging Face ``text`` loader reads it); in JSON
lines every object is one document.

**Train and held-out files.** A corpus folder holds training files and held-out files. A file whose name contains
a held-out word (``valid``, ``validation``, ``val``, ``dev``, ``devel``, ``test``, ``heldout``, ``holdout``, as in
``valid.jsonl.gz`` or ``shard-dev.txt``), or that sits in a sub-folder so named, is held-out; every other corpus
file directly in the folder, or in a ``train/`` sub-folder, is for training. A folder given for training
(``indus tokenizer train``, ``train_files``) therefore means its training files only, and a folder given for
held-out data (``valid_files``) its held-out files only; a single file is taken as it is. The shared data's
``corpus`` dataset (``corpus/{train,valid}.jsonl.gz``) works both ways by name: ``train_files: [corpus]``,
``valid_files: [corpus]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from indus.data.jsonl import iter_jsonl
from indus.data.registry import resolve_dataset
from indus.data.text import iter_lines
from indus.errors import DataFormatError, IndusError

CORPUS_SUFFIXES = (".jsonl", ".jsonl.gz", ".txt", ".txt.gz")
HELD_OUT_WORDS = frozenset({"valid", "validation", "val", "dev", "devel", "test", "heldout", "holdout"})
#: which files of a folder: training files, held-out files, or every corpus file (validation, counting)
SPLITS = ("train", "heldout", "all")


def _stem(name: str) -> str:
    for suffix in sorted(CORPUS_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_held_out(name: str) -> bool:
    """Whether a corpus file or folder name marks held-out text (a held-out word among its ``-_.`` parts).

    >>> is_held_out("valid.jsonl.gz"), is_held_out("shard-00-dev.txt"), is_held_out("train.jsonl.gz")
    (True, True, False)
    """
    return bool(HELD_OUT_WORDS & set(re.split(r"[-_.\s]+", _stem(name).lower())))


def _corpus_files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(CORPUS_SUFFIXES))


def folder_splits(folder: str | Path) -> dict[str, list[Path]]:
    """The training and held-out corpus files of a folder: ``{"train": [...], "heldout": [...]}``."""
    folder = Path(folder)
    train: list[Path] = []
    held: list[Path] = []
    for f in _corpus_files_in(folder):
        (held if is_held_out(f.name) else train).append(f)
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name.lower() == "train":
            train += _corpus_files_in(sub)
        elif is_held_out(sub.name):
            held += _corpus_files_in(sub)
    return {"train": train, "heldout": held}


def resolve_corpus(path: str | Path, *, from_config: bool = False) -> Path:
    """A corpus path from a path or a dataset name under the data root (``corpus``, ``corpus/train.jsonl.gz``)."""
    return resolve_dataset(path, kind="corpus", from_config=from_config)


def corpus_files(path: str | Path, split: str = "all", *, from_config: bool = False) -> list[Path]:
    """The corpus files at ``path`` (a file, a folder or a dataset name), sorted.

    Parameters
    ----------
    path
        A corpus file (taken as it is), a folder, or a name under the data root.
    split
        For a folder: ``"train"`` (its training files), ``"heldout"`` (its held-out files) or ``"all"``.
    from_config
        Resolve names as a config does (inside the data root only; see
        :func:`indus.data.registry.resolve_dataset`).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = resolve_corpus(path, from_config=from_config)
    if path.is_dir():
        parts = folder_splits(path)
        files = sorted(parts["train"] + parts["heldout"]) if split == "all" else parts[split]
        if not files:
            if split == "train" and parts["heldout"]:
                raise IndusError(
                    f"{path}: no training files in this folder, only held-out ones "
                    f"({', '.join(p.name for p in parts['heldout'])}), which are never trained on"
                )
            if split == "heldout":
                raise IndusError(
                    f"{path}: no held-out files in this folder (expected a file named like "
                    f"valid.jsonl.gz or dev.txt, or a valid/ sub-folder)"
                )
            raise IndusError(f"{path}: no corpus files ({', '.join(CORPUS_SUFFIXES)}) in this folder")
        return files
    if not path.is_file():
        raise IndusError(f"{path}: corpus file not found")
    if not path.name.endswith(CORPUS_SUFFIXES):
        raise IndusError(f"{path}: expected a corpus file ending in {', '.join(CORPUS_SUFFIXES)}")
    return [path]


def has_held_out(path: str | Path) -> bool:
    """Whether ``path`` (resolved like :func:`corpus_files`) is a folder with held-out files."""
    path = resolve_corpus(path)
    return path.is_dir() and bool(folder_splits(path)["heldout"])


def split_corpus(
    train: Sequence[str | Path], heldout: Sequence[str | Path], *, from_config: bool = False
) -> tuple[list[Path], list[Path]]:
    """The training and held-out files of a run; a file on both sides is refused.

    Raises
    ------
    IndusError
        When a file would be both trained on and used as held-out data.
    """
    train_files = [f for p in train for f in corpus_files(p, "train", from_config=from_config)]
    held_files = [f for p in heldout for f in corpus_files(p, "heldout", from_config=from_config)]
    held = {f.resolve(): f for f in held_files}
    both = [f for f in train_files if f.resolve() in held]
    if both:
        raise IndusError(
            f"{both[0]}: the same file is given as training and as held-out data; held-out text "
            f"must never be trained on (give the held-out files separately, e.g. valid.jsonl.gz)"
        )
    return train_files, held_files


def iter_texts(path: str | Path, limit: int | None = None, split: str = "train") -> Iterator[str]:
    """Yield the documents (JSON lines) or lines (plain text) of a corpus file or folder.

    A folder gives its ``split`` files (training files by default, see the module docstring); a name is looked
    up under the data root.
    """
    n = 0
    for file in corpus_files(path, split):
        if ".jsonl" in file.name:
            for lineno, obj in iter_jsonl(file, required=("text",)):
                if not isinstance(obj["text"], str):
                    raise DataFormatError(file, lineno, "field 'text' must be a string")
                yield obj["text"]
                n += 1
                if limit is not None and n >= limit:
                    return
        else:
            for _, line in iter_lines(file):
                if line.strip():
                    yield line
                    n += 1
                    if limit is not None and n >= limit:
                        return


def check(path: str | Path) -> dict:
    """Validate a corpus file or folder (every file, training and held-out) and count it.

    Returns
    -------
    dict
        ``format`` ("corpus"), ``path``, ``texts`` (total) and ``files``: {file: {split, texts, empty, characters,
        words}}; a text is a document (JSON lines) or a non-blank line (plain text), ``empty`` counts
        documents whose text is blank.
    """
    path = Path(path)
    held = set(folder_splits(path)["heldout"]) if path.is_dir() else set()
    files: dict[str, dict[str, int | str]] = {}
    for file in corpus_files(path, "all"):
        texts = empty = chars = words = 0
        for text in iter_texts(file, split="all"):
            texts += 1
            empty += not text.strip()
            chars += len(text)
            words += len(text.split())
        if texts == 0:
            raise DataFormatError(file, None, "no texts (expected JSON lines with a 'text' field, or lines of text)")
        if texts == empty:
            raise DataFormatError(file, None, f"all {texts} texts are blank")
        name = str(file.relative_to(path)) if path.is_dir() else file.name
        files[name] = {
            "split": "held-out" if file in held or (not path.is_dir() and is_held_out(file.name)) else "train",
            "texts": texts,
            "empty": empty,
            "characters": chars,
            "words": words,
        }
    return {
        "format": "corpus",
        "path": str(path),
        "texts": sum(int(f["texts"]) for f in files.values()),
        "files": files,
    }
