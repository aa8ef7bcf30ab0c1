"""Sentence-pair files for contrastive training: JSON lines ``{"anchor", "positive", "source"?, "negative"?}``.

``source`` groups pairs for one-source-per-batch sampling (default: the file's name); ``negative`` is an
optional hard negative.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from indus.data.jsonl import iter_jsonl
from indus.errors import DataFormatError, IndusError

PAIR_SUFFIXES = (".jsonl", ".jsonl.gz")


@dataclass(frozen=True)
class Pair:
    """One training pair."""

    anchor: str
    positive: str
    source: str
    negative: str | None = None


def pair_files(path: str | Path) -> list[Path]:
    """The pair files at ``path``: the file itself, or every ``*.jsonl(.gz)`` in a folder (sorted)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.endswith(PAIR_SUFFIXES))
        if not files:
            raise IndusError(f"{path}: no *.jsonl or *.jsonl.gz pair files in this folder")
        return files
    if not path.is_file():
        raise IndusError(f"{path}: pairs file not found")
    return [path]


def _source_name(path: Path) -> str:
    name = path.name
    for suffix in (".jsonl.gz", ".jsonl"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def read_pairs(path: str | Path, limit: int | None = None) -> list[Pair]:
    """Read and validate pairs from a file or folder; errors name the file and line.

    Parameters
    ----------
    path
        A ``.jsonl`` / ``.jsonl.gz`` file or a folder of them.
    limit
        Read at most this many pairs per file.
    """
    pairs: list[Pair] = []
    for file in pair_files(path):
        default_source = _source_name(file)
        n = 0
        for lineno, obj in iter_jsonl(file, required=("anchor", "positive")):
            for key in ("anchor", "positive"):
                if not isinstance(obj[key], str) or not obj[key].strip():
                    raise DataFormatError(file, lineno, f"field {key!r} must be a non-empty string")
            negative = obj.get("negative")
            if negative is not None and (not isinstance(negative, str) or not negative.strip()):
                raise DataFormatError(file, lineno, "field 'negative' must be a non-empty string when present")
            source = obj.get("source") or default_source
            pairs.append(Pair(obj["anchor"], obj["positive"], str(source), negative))
            n += 1
            if limit is not None and n >= limit:
                break
    return pairs


def check(path: str | Path) -> dict:
    """Validate a pairs file or folder and count it.

    Returns
    -------
    dict
        ``format`` ("pairs"), ``path``, ``pairs`` (total) and ``files``: {file: {pairs, anchors, positives,
        negatives, sources}} with distinct anchors and positives, pairs holding a hard negative, and sources.
    """
    files: dict[str, dict[str, int]] = {}
    for file in pair_files(path):
        pairs = read_pairs(file)
        files[file.name] = {
            "pairs": len(pairs),
            "anchors": len({p.anchor for p in pairs}),
            "positives": len({p.positive for p in pairs}),
            "negatives": sum(p.negative is not None for p in pairs),
            "sources": len({p.source for p in pairs}),
        }
    return {"format": "pairs", "path": str(path), "pairs": sum(f["pairs"] for f in files.values()), "files": files}
