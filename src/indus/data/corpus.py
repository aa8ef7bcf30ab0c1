"""Pretraining corpora: JSON lines with a ``text`` field (optionally gzip-compressed) or plain text files.

In plain text every non-blank line is one text unit (as the Hugging Face ``text`` loader reads it); in JSON
lines every object is one document.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from indus.data.jsonl import iter_jsonl, open_text
from indus.errors import DataFormatError, IndusError

CORPUS_SUFFIXES = (".jsonl", ".jsonl.gz", ".txt", ".txt.gz")


def corpus_files(path: str | Path) -> list[Path]:
    """The corpus files at ``path``: the file itself or every supported file in a folder (sorted)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.endswith(CORPUS_SUFFIXES))
        if not files:
            raise IndusError(f"{path}: no corpus files ({', '.join(CORPUS_SUFFIXES)}) in this folder")
        return files
    if not path.is_file():
        raise IndusError(f"{path}: corpus file not found")
    if not path.name.endswith(CORPUS_SUFFIXES):
        raise IndusError(f"{path}: expected a corpus file ending in {', '.join(CORPUS_SUFFIXES)}")
    return [path]


def iter_texts(path: str | Path, limit: int | None = None) -> Iterator[str]:
    """Yield the documents (JSON lines) or lines (plain text) of a corpus file or folder."""
    n = 0
    for file in corpus_files(path):
        if ".jsonl" in file.name:
            for lineno, obj in iter_jsonl(file, required=("text",)):
                if not isinstance(obj["text"], str):
                    raise DataFormatError(file, lineno, "field 'text' must be a string")
                yield obj["text"]
                n += 1
                if limit is not None and n >= limit:
                    return
        else:
            with open_text(file) as fh:
                for line in fh:
                    if line.strip():
                        yield line.rstrip("\n")
                        n += 1
                        if limit is not None and n >= limit:
                            return


def check(path: str | Path) -> dict:
    """Validate a corpus file or folder and count it.

    Returns
    -------
    dict
        ``format`` ("corpus"), ``path``, ``texts`` (total) and ``files``: {file: {texts, empty, characters,
        words}}; a text is a document (JSON lines) or a non-blank line (plain text), ``empty`` counts
        documents whose text is blank.
    """
    files: dict[str, dict[str, int]] = {}
    for file in corpus_files(path):
        texts = empty = chars = words = 0
        for text in iter_texts(file):
            texts += 1
            empty += not text.strip()
            chars += len(text)
            words += len(text.split())
        if texts == 0:
            raise DataFormatError(file, None, "no texts (expected JSON lines with a 'text' field, or lines of text)")
        files[file.name] = {"texts": texts, "empty": empty, "characters": chars, "words": words}
    return {"format": "corpus", "path": str(path), "texts": sum(f["texts"] for f in files.values()), "files": files}
