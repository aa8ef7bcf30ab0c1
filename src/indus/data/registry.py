"""Named datasets under a data root.

The data root is given by ``--data-root`` (the CLI stores it in ``INDUS_DATA``) or the ``INDUS_DATA``
environment variable. Its layout is the one of the shared data folder::

    corpus/{train,valid}.jsonl.gz        pretraining corpus             -> name "corpus"
    pairs/*.jsonl.gz                     contrastive pairs              -> name "pairs" (or "pairs/<file>")
    ner/<name>/{train,dev,test}.*        CoNLL token files              -> name "<name>"
    qa/<name>/*.json                     SQuAD JSON                     -> name "<name>"
    ir/<name>/                           BEIR folder                    -> name "<name>"
    classification/<name>/*.jsonl        {"text", "label"} lines        -> name "<name>"
    scaling/*.csv                        benchmark score tables         -> name "scaling"

Any folder in that layout is found, so a user's own sets (``ner/climate-change``) get names too. Every
command also accepts a plain path instead of a name.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path

from indus.errors import IndusError

ENV_VAR = "INDUS_DATA"
TASK_KINDS = ("ner", "qa", "ir", "classification")


@dataclass(frozen=True)
class DatasetEntry:
    """One named dataset: its name, its kind and where it lives."""

    name: str
    kind: str
    path: Path


def data_root(explicit: str | Path | None = None) -> Path | None:
    """The data root: ``explicit`` if given, else ``$INDUS_DATA``, else ``None``."""
    value = explicit if explicit is not None else os.environ.get(ENV_VAR)
    if not value:
        return None
    root = Path(value).expanduser()
    if not root.is_dir():
        raise IndusError(f"{root}: data root is not a directory (from {'--data-root' if explicit else ENV_VAR})")
    return root


def require_data_root(explicit: str | Path | None = None) -> Path:
    """Like :func:`data_root` but a missing root is an error that says how to set one."""
    root = data_root(explicit)
    if root is None:
        raise IndusError(f"no data root: pass --data-root DIR or set {ENV_VAR} (e.g. to ../shared/data)")
    return root


def discover(root: str | Path) -> list[DatasetEntry]:
    """All named datasets found under ``root``, sorted by kind then name."""
    root = Path(root)
    entries: list[DatasetEntry] = []
    if (root / "corpus").is_dir():
        entries.append(DatasetEntry("corpus", "corpus", root / "corpus"))
    if (root / "pairs").is_dir():
        entries.append(DatasetEntry("pairs", "pairs", root / "pairs"))
    for kind in TASK_KINDS:
        folder = root / kind
        if folder.is_dir():
            for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
                entries.append(DatasetEntry(sub.name, kind, sub))
    if (root / "scaling").is_dir():
        entries.append(DatasetEntry("scaling", "scaling", root / "scaling"))
    return entries


def resolve_dataset(name_or_path: str | Path, kind: str | None = None, root: str | Path | None = None) -> Path:
    """Turn a dataset name or a path into a path.

    An existing path wins; otherwise ``name_or_path`` is looked up among the datasets under the data root
    (optionally restricted to ``kind``), then as a path relative to the root (``ner/bc5cdr``,
    ``pairs/scitldr.jsonl.gz``).
    """
    candidate = Path(name_or_path).expanduser()
    if candidate.exists():
        return candidate
    name = str(name_or_path)
    base = data_root(root)
    if candidate.is_absolute() or name.startswith((".", "~")):
        raise IndusError(f"{name}: no such file or directory")
    if base is None:
        raise IndusError(
            f"{name}: no such file or directory, and no data root to look the name up in "
            f"(pass --data-root DIR or set {ENV_VAR})"
        )
    entries = [e for e in discover(base) if kind is None or e.kind == kind]
    matches = [e for e in entries if e.name == name]
    if len(matches) == 1:
        return matches[0].path
    if len(matches) > 1:
        options = ", ".join(f"{e.kind}/{e.name}" for e in matches)
        raise IndusError(f"{name}: ambiguous dataset name; use one of {options}")
    for rel in (base / name, base / f"{name}.jsonl.gz", base / f"{name}.jsonl"):
        if rel.exists():
            return rel
    known = ", ".join(e.name for e in entries) or "none"
    what = f"{kind} dataset" if kind else "dataset"
    raise IndusError(f"{name}: unknown {what} under {base} (known: {known}); or give a path")


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")


def _count_lines(path: Path) -> int:
    with _open_text(path) as fh:
        return sum(1 for line in fh if line.strip())


def _count_sentences(path: Path) -> int:
    n, in_sentence = 0, False
    with _open_text(path) as fh:
        for line in fh:
            stripped = line.strip()
            if not stripped or stripped.startswith("-DOCSTART-"):
                in_sentence = False
            elif not in_sentence:
                n, in_sentence = n + 1, True
    return n


def _count_squad_questions(path: Path) -> int:
    data = json.loads(path.read_text(encoding="utf-8")).get("data", [])
    return sum(len(p.get("qas", [])) for a in data for p in a.get("paragraphs", []))


def count(entry: DatasetEntry) -> dict[str, int]:
    """Quick counts for ``indus data list`` (no validation; ``indus data check`` validates)."""
    path = entry.path
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if entry.kind == "corpus":
        texts = [p for p in files if ".jsonl" in p.name or p.suffix == ".txt"]
        return {f"{p.name.split('.')[0]} docs": _count_lines(p) for p in texts}
    if entry.kind == "pairs":
        return {"files": len(files), "pairs": sum(_count_lines(p) for p in files if ".jsonl" in p.name)}
    if entry.kind == "ner":
        return {f"{p.stem} sent": _count_sentences(p) for p in files if p.suffix in {".tsv", ".txt", ".conll", ".iob"}}
    if entry.kind == "qa":
        return {f"{p.stem} questions": _count_squad_questions(p) for p in files if p.suffix == ".json"}
    if entry.kind == "ir":
        counts = {}
        if (path / "corpus.jsonl").is_file():
            counts["docs"] = _count_lines(path / "corpus.jsonl")
        if (path / "queries.jsonl").is_file():
            counts["queries"] = _count_lines(path / "queries.jsonl")
        for qrels in sorted((path / "qrels").glob("*.tsv")):
            counts[f"{qrels.stem} qrels"] = max(_count_lines(qrels) - 1, 0)
        return counts
    if entry.kind == "classification":
        return {p.stem: _count_lines(p) for p in files if ".jsonl" in p.name}
    if entry.kind == "scaling":
        counts = {}
        for p in files:
            if p.suffix == ".csv":
                with p.open(encoding="utf-8", newline="") as fh:
                    counts[p.stem] = max(sum(1 for _ in csv.reader(fh)) - 1, 0)
        return counts
    return {}
