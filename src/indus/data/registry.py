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
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from indus.data.text import open_text, read_text
from indus.errors import DataFormatError, IndusError

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


def is_explicit_path(value: str | Path) -> bool:
    """Whether ``value`` is spelled as a filesystem path (absolute, or starting with ``./``, ``../`` or ``~``)
    rather than as a dataset name."""
    text = str(value)
    return Path(text).is_absolute() or text in (".", "..") or text.startswith(("./", "../", "~", ".\\", "..\\"))


def resolve_dataset(
    name_or_path: str | Path, kind: str | None = None, root: str | Path | None = None, *, from_config: bool = False
) -> Path:
    """Turn a dataset name or a path into a path.

    A value spelled as a path (``/abs``, ``./rel``, ``../rel``, ``~/x``) is that path. On the command line
    (``from_config=False``) any existing path also wins, since the user typed it. Everything else is a *name*,
    looked up among the datasets under the data root (optionally restricted to ``kind``), then as a path relative to
    the root (``ner/bc5cdr``, ``pairs/scitldr.jsonl.gz``). A name never leaves the root: one with a ``..``
    component is refused, so a config or suite written by someone else reads outside the root only through a path
    that says so. Without a data root, a config's relative path is read from the working directory.
    """
    text = str(name_or_path)
    if not text.strip():
        raise IndusError("empty dataset name or path")
    candidate = Path(text).expanduser()
    if is_explicit_path(text):
        if candidate.exists():
            return candidate
        raise IndusError(f"{text}: no such file or directory")
    if not from_config and candidate.exists():
        return candidate
    if ".." in Path(text).parts:
        raise IndusError(
            f"{text}: a dataset name may not contain '..' (names resolve inside the data root); "
            "to read a file elsewhere give its path, starting with ./, ../ or /"
        )
    base = data_root(root)
    if base is None:
        if from_config and candidate.exists():
            return candidate
        raise IndusError(
            f"{text}: no such file or directory, and no data root to look the name up in "
            f"(pass --data-root DIR or set {ENV_VAR})"
        )
    entries = [e for e in discover(base) if kind is None or e.kind == kind]
    matches = [e for e in entries if e.name == text]
    if len(matches) == 1:
        return matches[0].path
    if len(matches) > 1:
        options = ", ".join(f"{e.kind}/{e.name}" for e in matches)
        raise IndusError(f"{text}: ambiguous dataset name; use one of {options}")
    for rel in (base / text, base / f"{text}.jsonl.gz", base / f"{text}.jsonl"):
        if rel.exists():
            return rel
    known = ", ".join(e.name for e in entries) or "none"
    what = f"{kind} dataset" if kind else "dataset"
    hint = f"or give a path (./{text})" if from_config and candidate.exists() else "or give a path"
    raise IndusError(f"{text}: unknown {what} under {base} (known: {known}); {hint}")


def _open_text(path: Path):
    return open_text(path)


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
    doc = json.loads(read_text(path))
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        raise DataFormatError(path, None, 'expected a SQuAD JSON object with a "data" list')
    return sum(
        len(p.get("qas") or []) if isinstance(p, dict) else 0
        for a in data
        if isinstance(a, dict)
        for p in (a.get("paragraphs") or [])
    )


#: what a count of one file may raise on a bad file (``indus data check`` says more)
_COUNT_ERRORS = (IndusError, OSError, ValueError, csv.Error, RecursionError)


def _safe(counter, path: Path) -> int | str:
    """``counter(path)``, or ``"unreadable (<reason>)"`` for a bad file, so one file cannot stop a listing."""
    try:
        return counter(path)
    except _COUNT_ERRORS as exc:
        reason = exc.expected if isinstance(exc, DataFormatError) else str(exc)
        where = f"line {exc.line}: " if isinstance(exc, DataFormatError) and exc.line else ""
        return f"unreadable ({where}{reason})"


def _count_csv_rows(path: Path) -> int:
    return max(sum(1 for _ in csv.reader(io.StringIO(read_text(path), newline=""))) - 1, 0)


def _count_qrels(path: Path) -> int:
    return max(_count_lines(path) - 1, 0)


def _sum(values: list[int | str]) -> int | str:
    bad = [v for v in values if isinstance(v, str)]
    return bad[0] if bad else sum(values)  # type: ignore[arg-type]


def count(entry: DatasetEntry) -> dict[str, int | str]:
    """Quick counts for ``indus data list`` (no validation; ``indus data check`` validates).

    A file that cannot be read counts as ``"unreadable (<reason>)"`` instead of stopping the listing.
    """
    path = entry.path
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if entry.kind == "corpus":
        texts = [p for p in files if ".jsonl" in p.name or p.name.endswith((".txt", ".txt.gz"))]
        return {f"{p.name.split('.')[0]} docs": _safe(_count_lines, p) for p in texts}
    if entry.kind == "pairs":
        return {"files": len(files), "pairs": _sum([_safe(_count_lines, p) for p in files if ".jsonl" in p.name])}
    if entry.kind == "ner":
        return {
            f"{p.stem} sent": _safe(_count_sentences, p)
            for p in files
            if p.suffix in {".tsv", ".txt", ".conll", ".iob", ".iob2", ".bio"}
        }
    if entry.kind == "qa":
        return {f"{p.stem} questions": _safe(_count_squad_questions, p) for p in files if p.suffix == ".json"}
    if entry.kind == "ir":
        counts: dict[str, int | str] = {}
        for stem, label in (("corpus", "docs"), ("queries", "queries")):
            for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
                if (path / name).is_file():
                    counts[label] = _safe(_count_lines, path / name)
        for qrels in sorted((path / "qrels").glob("*.tsv")):
            counts[f"{qrels.stem} qrels"] = _safe(_count_qrels, qrels)
        return counts
    if entry.kind == "classification":
        return {p.name.split(".")[0]: _safe(_count_lines, p) for p in files if ".jsonl" in p.name}
    if entry.kind == "scaling":
        return {p.stem: _safe(_count_csv_rows, p) for p in files if p.suffix == ".csv"}
    return {}
