"""``indus data check``: recognise a dataset's format from its path and run that format's validator.

Formats and their validators (each ``check(path) -> dict``, imported lazily):

=================  ===================================  ==================================================
format             looks like                           validator
=================  ===================================  ==================================================
``ner``            CoNLL token files, or a folder of    :func:`indus.data.conll.check`
                   train/dev/test ``.tsv/.txt/...``
``squad``          ``*.json`` with a ``data`` list      :func:`indus.data.squad.check`
``beir``           folder with ``corpus.jsonl``,        :func:`indus.data.beir.check`
                   ``queries.jsonl``, ``qrels/``
``pairs``          JSON lines with anchor, positive     :func:`indus.data.pairs.check`
``classification`` JSON lines with text, label          :func:`indus.data.classification.check`
``corpus``         JSON lines with text, or plain text  :func:`indus.data.corpus.check`
``scores``         ``*.csv`` of model benchmark scores  :func:`indus.scaling.scores.check`
=================  ===================================  ==================================================

A name instead of a path is looked up under the data root, whose layout also fixes the format. A validator
returns a dict: scalar values are a summary, dict-of-dict values (``splits``, ``files``) are tables of counts.

Example
-------
>>> import pathlib, tempfile
>>> conll = pathlib.Path(tempfile.mkdtemp()) / "train.tsv"
>>> _ = conll.write_text("Aspirin\\tB-Chemical\\ncures\\tO\\nheadache\\tB-Disease\\n\\n")
>>> check(conll)["scheme"]
'IOB2'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from indus.data.conll import NER_SUFFIXES, SPLIT_ALIASES, is_tag
from indus.data.jsonl import iter_jsonl
from indus.data.registry import data_root, discover, resolve_dataset
from indus.data.text import open_text
from indus.errors import DataFormatError, IndusError

VALIDATORS: dict[str, str] = {
    "ner": "indus.data.conll:check",
    "squad": "indus.data.squad:check",
    "beir": "indus.data.beir:check",
    "pairs": "indus.data.pairs:check",
    "classification": "indus.data.classification:check",
    "corpus": "indus.data.corpus:check",
    "scores": "indus.scaling.scores:check",
}
#: registry kind -> format
KIND_FORMATS = {
    "ner": "ner",
    "qa": "squad",
    "ir": "beir",
    "pairs": "pairs",
    "classification": "classification",
    "corpus": "corpus",
    "scaling": "scores",
}
_JSONL = (".jsonl", ".jsonl.gz")
_SNIFF_LINES = 200


def _looks_like_conll(path: Path) -> bool:
    """Whether most of the first lines of ``path`` are ``token ... TAG`` rows (a bad line or two is for the
    validator to report, not a reason to call the file something else)."""
    good = total = 0
    try:
        with open_text(path) as fh:
            for line in fh:
                stripped = line.strip()
                if not stripped:
                    continue
                fields = stripped.split("\t") if "\t" in stripped else stripped.split()
                if fields[0] == "-DOCSTART-":
                    continue
                total += 1
                good += len(fields) >= 2 and is_tag(fields[-1].strip())
                if total >= _SNIFF_LINES:
                    break
    except (IndusError, OSError):  # an unreadable file: the validator names the problem
        return False
    return total > 0 and good >= 0.8 * total


def _jsonl_format(path: Path) -> str:
    """``pairs``, ``classification`` or ``corpus`` from the keys of a JSON-lines file's first object."""
    first = next((obj for _, obj in iter_jsonl(path)), None)
    if first is None:
        raise DataFormatError(path, None, "empty file (expected JSON lines)")
    if "anchor" in first and "positive" in first:
        return "pairs"
    if "text" in first and "label" in first:
        return "classification"
    if "text" in first:
        return "corpus"
    raise DataFormatError(
        path,
        1,
        f"unrecognised JSON lines (keys {', '.join(sorted(first))}); expected "
        "pairs {anchor, positive}, classification {text, label} or corpus {text}",
    )


def _file_format(path: Path) -> str:
    name = path.name
    if name.endswith(".json"):
        return "squad"
    if name.endswith(".csv"):
        return "scores"
    if name.endswith(_JSONL):
        return _jsonl_format(path)
    if name.endswith((".txt", ".txt.gz")):  # plain-text corpus or CoNLL (the SciERC dialect): look inside
        return "ner" if _looks_like_conll(path) else "corpus"
    if path.suffix in NER_SUFFIXES:
        return "ner"
    raise IndusError(
        f"{path}: unknown file type (expected .json, .jsonl(.gz), .txt(.gz), .csv or CoNLL {', '.join(NER_SUFFIXES)})"
    )


def _folder_format(path: Path) -> str:
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    names = {p.name for p in files}
    if {"ner", "qa", "ir", "classification", "corpus", "pairs"} & {p.name for p in path.iterdir() if p.is_dir()}:
        raise IndusError(f"{path}: looks like a data root; check one dataset in it (`indus data list` names them)")
    if ({"corpus.jsonl", "corpus.jsonl.gz"} & names) or (path / "qrels").is_dir():
        return "beir"
    splits = [p for p in files if p.suffix in NER_SUFFIXES and SPLIT_ALIASES.get(p.stem.lower())]
    if any(p.suffix != ".txt" for p in splits) or (splits and _looks_like_conll(splits[0])):
        return "ner"
    if any(p.name.endswith(".json") for p in files):
        return "squad"
    jsonl = [p for p in files if p.name.endswith(_JSONL)]
    if jsonl:
        return _jsonl_format(jsonl[0])
    if any(p.name.endswith((".txt", ".txt.gz")) for p in files):
        return "corpus"
    if any(p.suffix == ".csv" for p in files):
        return "scores"
    raise IndusError(
        f"{path}: no dataset files recognised (expected CoNLL split files, SQuAD .json, a BEIR "
        "folder, or .jsonl(.gz) / .txt files)"
    )


def detect_format(path: str | Path) -> str:
    """The format of a file or folder: one of :data:`VALIDATORS`."""
    path = Path(path)
    if path.is_dir():
        return _folder_format(path)
    if path.is_file():
        return _file_format(path)
    raise IndusError(f"{path}: no such file or directory")


def _resolve(name_or_path: str | Path, root: str | Path | None) -> tuple[Path, str | None]:
    """The path of a dataset, and its format when the data-root layout tells it."""
    candidate = Path(name_or_path).expanduser()
    if candidate.exists():
        return candidate, None

    path = resolve_dataset(name_or_path, root=root)
    base = data_root(root)
    kinds = {e.path: e.kind for e in discover(base)} if base is not None else {}
    return path, KIND_FORMATS.get(kinds.get(path, ""))


def validator(fmt: str):
    """The ``check`` function of a format, imported on first use."""
    from indus.lazy import lazy_attr

    return lazy_attr(VALIDATORS, fmt, what="data format")


def check(
    name_or_path: str | Path, fmt: str | None = None, *, scheme: str = "auto", root: str | Path | None = None
) -> dict[str, Any]:
    """Validate a dataset given by path or name; the format is detected unless ``fmt`` is given.

    Parameters
    ----------
    name_or_path
        A file, a folder, or a dataset name under the data root.
    fmt
        Force a format (see :data:`VALIDATORS`).
    scheme
        NER tag scheme (``auto`` detects; a declared scheme is validated strictly).
    root
        Data root for names (default ``$INDUS_DATA``).

    Returns
    -------
    dict
        The validator's counts, with ``format`` and ``path`` first.
    """
    path, known = _resolve(name_or_path, root)
    fmt = fmt or known or detect_format(path)
    func = validator(fmt)
    result = func(path, scheme=scheme) if fmt == "ner" else func(path)
    return {"format": fmt, "path": str(path), **{k: v for k, v in dict(result).items() if k not in ("format", "path")}}


def summary_rows(result: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Split a check result into summary rows (key, value) and named tables (``splits``, ``files``, ...)."""
    summary: list[dict[str, Any]] = []
    tables: dict[str, list[dict[str, Any]]] = {}
    for key, value in result.items():
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            label = key[:-1] if key.endswith("s") else key
            tables[key] = [{label: name, **row} for name, row in value.items()]
        elif isinstance(value, dict):
            summary.append({"key": key, "value": ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())})
        elif isinstance(value, list | tuple):
            summary.append({"key": key, "value": ", ".join(map(str, value))})
        else:
            summary.append({"key": key, "value": _fmt(value)})
    return summary, tables


def _fmt(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
