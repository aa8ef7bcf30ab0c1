"""Text classification sets: JSON lines ``{"text": str, "label": str | int}`` in train/dev/test files.

Extra fields (``metadata``, ids) are ignored. A dataset is a folder holding ``train``, ``dev`` (also ``devel``,
``valid``, ``validation``) and ``test`` files ending in ``.jsonl`` or ``.jsonl.gz``; integer labels are read as
their string form, so ``1`` and ``"1"`` are one class.

Example
-------
>>> import json, tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "train.jsonl").write_text(json.dumps({"text": "a b", "label": "x"}) + "\\n")
>>> load_classification_dataset(d).labels
['x']
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indus.data.jsonl import iter_jsonl
from indus.data.splits import SPLIT_ALIASES, SPLIT_ORDER, canonical_split
from indus.errors import DataFormatError, IndusError

CLS_SUFFIXES = (".jsonl", ".jsonl.gz")


@dataclass(frozen=True)
class Example:
    """One labelled text and its line in the file."""

    text: str
    label: str
    line: int = 0


@dataclass
class ClassificationDataset:
    """A classification folder: examples per split and the sorted label list (over all splits)."""

    path: Path
    splits: dict[str, list[Example]]
    labels: list[str]
    files: dict[str, Path] = field(default_factory=dict)

    def split(self, name: str) -> list[Example]:
        """The examples of one split, or a clear error naming the splits that exist."""
        split = canonical_split(name)
        if split not in self.splits:
            raise IndusError(f"{self.path}: no {name!r} split (found: {', '.join(self.splits) or 'none'})")
        return self.splits[split]


def _stem(path: Path) -> str:
    name = path.name
    for suffix in CLS_SUFFIXES[::-1]:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def read_classification(path: str | Path) -> list[Example]:
    """Read and validate one ``{"text", "label"}`` JSON-lines file; errors name the file and line."""
    path = Path(path)
    examples: list[Example] = []
    for lineno, obj in iter_jsonl(path, required=("text", "label")):
        text, label = obj["text"], obj["label"]
        if not isinstance(text, str) or not text.strip():
            raise DataFormatError(path, lineno, "field 'text' must be a non-empty string")
        if isinstance(label, bool) or not isinstance(label, str | int) or (isinstance(label, str) and not label):
            raise DataFormatError(
                path, lineno, f"field 'label' must be one class name (string or integer), found {label!r}"
            )
        examples.append(Example(text, str(label), lineno))
    if not examples:
        raise DataFormatError(path, None, 'no examples (expected one {"text", "label"} object per line)')
    return examples


def classification_split_files(path: str | Path) -> dict[str, Path]:
    """The split files of a classification folder (only those present), in train/dev/test order."""
    path = Path(path)
    if not path.is_dir():
        raise IndusError(f"{path}: not a directory (expected a folder with train/dev/test .jsonl files)")
    found: dict[str, Path] = {}
    for file in sorted(path.iterdir()):
        split = SPLIT_ALIASES.get(_stem(file).lower()) if file.name.endswith(CLS_SUFFIXES) else None
        if split is None or not file.is_file():
            continue
        if split in found:
            raise IndusError(f"{path}: two files for the {split} split ({found[split].name}, {file.name})")
        found[split] = file
    if not found:
        raise IndusError(
            f"{path}: no classification split files (expected train/dev/test with a suffix {' or '.join(CLS_SUFFIXES)})"
        )
    return {s: found[s] for s in SPLIT_ORDER if s in found}


def load_classification_dataset(path: str | Path) -> ClassificationDataset:
    """Read every split of a classification folder."""
    files = classification_split_files(path)
    splits = {split: read_classification(file) for split, file in files.items()}
    labels = sorted({e.label for examples in splits.values() for e in examples})
    return ClassificationDataset(Path(path), splits, labels, files)


def check(path: str | Path) -> dict[str, Any]:
    """Validate a classification folder or file and count it.

    Returns
    -------
    dict
        ``format`` ("classification"), ``path``, ``labels`` ({label: examples over all splits}) and ``splits``:
        {split: {file, examples, labels, mean_words, max_words, unseen_labels}}; ``unseen_labels`` counts the
        labels of a split that the train split never shows.
    """
    path = Path(path)
    if path.is_dir():
        ds = load_classification_dataset(path)
        parts = {s: (ds.files[s], ds.splits[s]) for s in ds.splits}
    else:
        parts = {SPLIT_ALIASES.get(_stem(path).lower(), _stem(path)): (path, read_classification(path))}
    train_labels = {e.label for e in parts["train"][1]} if "train" in parts else None
    splits: dict[str, dict[str, Any]] = {}
    all_labels: Counter[str] = Counter()
    for split, (file, examples) in parts.items():
        labels = Counter(e.label for e in examples)
        all_labels.update(labels)
        words = [len(e.text.split()) for e in examples]
        splits[split] = {
            "file": file.name,
            "examples": len(examples),
            "labels": len(labels),
            "mean_words": round(sum(words) / len(words), 1),
            "max_words": max(words),
            "unseen_labels": len(set(labels) - train_labels) if train_labels is not None else 0,
        }
    return {"format": "classification", "path": str(path), "labels": dict(sorted(all_labels.items())), "splits": splits}
