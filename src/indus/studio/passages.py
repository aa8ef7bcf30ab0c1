"""Passages for question writing: a corpus split into passages of about a set number of words.

A corpus is anything indus reads as documents (a BEIR folder or its ``corpus.jsonl``, JSON lines with ``id``/``_id``
and ``text`` (optional ``title``), JSON lines with only ``text``, plain text with one document per line, or a
dataset name), or a SQuAD ``.json`` file, whose contexts become the documents. A document is cut at sentence ends
into passages of at least ``words`` words (a sentence longer than that is cut between words); a passage is an exact
substring of its document, so answer offsets in it are offsets in the text the expert saw. A document that fits in
one passage keeps its own id; the passages of a longer one are ``ID-p1``, ``ID-p2``, ...
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from indus.data.corpus import iter_texts
from indus.data.jsonl import iter_jsonl
from indus.errors import DataFormatError, IndusError
from indus.retriever.index import read_documents, resolve_collection

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Passage:
    """A passage: its id, the id of the document it comes from, the document's title and the passage text."""

    id: str
    doc_id: str
    title: str
    text: str


def split_text(text: str, words: int) -> list[tuple[int, int]]:
    """``(start, end)`` character spans of ``text``'s passages of at least ``words`` words each.

    Spans start and end on non-space characters; the last passage takes what is left (it may be shorter).
    """
    if words < 1:
        raise IndusError(f"passage length must be at least 1 word, got {words}")
    # sentence spans, each cut into word chunks when longer than a passage
    pieces: list[tuple[int, int, int]] = []  # (start, end, n_words)
    pos = 0
    for sentence_end in [m.start() for m in SENTENCE_END.finditer(text)] + [len(text)]:
        spans = [m.span() for m in WORD.finditer(text, pos, sentence_end)]
        for i in range(0, len(spans), words):
            chunk = spans[i : i + words]
            pieces.append((chunk[0][0], chunk[-1][1], len(chunk)))
        pos = sentence_end
    out: list[tuple[int, int]] = []
    start, n = None, 0
    for a, b, count in pieces:
        start = a if start is None else start
        n += count
        if n >= words:
            out.append((start, b))
            start, n = None, 0
    if start is not None:
        if out and n < words // 2:  # a short tail joins the passage before it
            out[-1] = (out[-1][0], pieces[-1][1])
        else:
            out.append((start, pieces[-1][1]))
    return out


def _squad_documents(path: Path) -> list[tuple[str, str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
        docs = []
        for a, article in enumerate(data):
            for p, paragraph in enumerate(article["paragraphs"]):
                docs.append((f"{a}-{p}", str(article.get("title") or ""), paragraph["context"]))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise DataFormatError(path, None, f"expected SQuAD JSON with data[].paragraphs[].context ({exc})") from None
    return docs


def read_corpus(path: str | Path) -> list[tuple[str, str, str]]:
    """``(id, title, text)`` of every document of a corpus (see the module docstring)."""
    resolved = resolve_collection(path, "documents")
    if resolved.is_file() and resolved.name.endswith(".json"):
        return _squad_documents(resolved)
    if resolved.name.endswith((".jsonl", ".jsonl.gz")):
        first = next((obj for _, obj in iter_jsonl(resolved)), None)
        if first is not None and "id" not in first and "_id" not in first:  # a pretraining corpus: text only
            return [(str(i), "", text) for i, text in enumerate(iter_texts(resolved), start=1) if text.strip()]
    return read_documents(resolved, kind="documents")


def load_passages(path: str | Path, words: int = 120, *, seed: int = 0, limit: int | None = None) -> list[Passage]:
    """The passages of a corpus in the order writers see them (shuffled by ``seed``; ``limit`` documents at most)."""
    docs = read_corpus(path)
    if limit is not None:
        docs = docs[:limit]
    passages: list[Passage] = []
    for doc_id, title, text in docs:
        spans = split_text(text, words)
        for n, (a, b) in enumerate(spans, start=1):
            pid = doc_id if len(spans) == 1 else f"{doc_id}-p{n}"
            passages.append(Passage(pid, doc_id, title, text[a:b]))
    if not passages:
        raise IndusError(f"{path}: no passages (the corpus has no text)")
    random.Random(seed).shuffle(passages)
    return passages
