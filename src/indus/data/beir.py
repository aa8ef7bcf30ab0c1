"""BEIR retrieval folders: reader and validator.

The layout (Thakur et al. 2021, arXiv 2104.08663)::

    corpus.jsonl          {"_id": "d1", "title": "...", "text": "..."}     (title optional; .jsonl.gz also read)
    queries.jsonl         {"_id": "q1", "text": "..."}
    qrels/<split>.tsv     query-id <TAB> corpus-id <TAB> score, after a header line naming those three columns

Ids may be JSON strings or integers and are kept as strings; they must be unique. A qrels row must name a known
query and a known document and carry an integer score (graded relevance; ``score >= 1`` counts as relevant for
recall and MRR, as in trec_eval). A row repeated with the same score is ignored; the same pair with two different
scores is an error. Every error names the file and line.

Example
-------
>>> import json, pathlib, tempfile
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "text": "Sea ice is declining."}) + "\\n"
...                                          + json.dumps({"_id": "d2", "text": "Stars form in clouds."}) + "\\n")
>>> _ = (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "sea ice"}) + "\\n")
>>> (folder / "qrels").mkdir()
>>> _ = (folder / "qrels" / "test.tsv").write_text("query-id\\tcorpus-id\\tscore\\nq1\\td1\\t1\\n")
>>> data = load_beir(folder, split="test")
>>> len(data.corpus), len(data.qrels)
(2, 1)
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indus.atomic import atomic_write_text
from indus.data.jsonl import iter_jsonl, open_text
from indus.data.registry import resolve_dataset
from indus.errors import DataFormatError, IndusError

QRELS_HEADER = ("query-id", "corpus-id", "score")


@dataclass(frozen=True)
class Document:
    """A corpus document."""

    title: str
    text: str

    def full_text(self) -> str:
        """``title + " " + text`` (the BEIR convention for dense encoders), stripped."""
        return f"{self.title} {self.text}".strip()


@dataclass
class BeirData:
    """A BEIR dataset with one split's relevance judgements.

    Attributes
    ----------
    path
        The folder.
    split
        The qrels split loaded.
    corpus
        Document id to :class:`Document`, in file order.
    queries
        Query id to text, in file order (all queries of ``queries.jsonl``).
    qrels
        Query id to ``{document id: score}`` for the split.
    """

    path: Path
    split: str
    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    @property
    def eval_queries(self) -> dict[str, str]:
        """The queries judged in this split (the ones metrics average over), in ``queries.jsonl`` order."""
        return {qid: text for qid, text in self.queries.items() if qid in self.qrels}


def _find(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        if (folder / name).is_file():
            return folder / name
    raise IndusError(
        f"{folder}: not a BEIR folder (no {stem}.jsonl; expected corpus.jsonl, queries.jsonl, qrels/<split>.tsv)"
    )


def _id(value: Any, path: Path, line: int, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
        raise DataFormatError(path, line, f'{what} "_id" must be a non-empty string or integer, found {value!r}')
    return str(value)


def read_corpus(path: str | Path) -> dict[str, Document]:
    """Read ``corpus.jsonl``: ``_id`` to :class:`Document`."""
    path = Path(path)
    corpus: dict[str, Document] = {}
    lines: dict[str, int] = {}
    for line, obj in iter_jsonl(path, required=("_id", "text")):
        doc_id = _id(obj["_id"], path, line, "document")
        title, text = obj.get("title") or "", obj["text"]
        if not isinstance(text, str) or not isinstance(title, str):
            raise DataFormatError(path, line, '"title" and "text" must be strings')
        if doc_id in corpus:
            raise DataFormatError(path, line, f"document id {doc_id!r} repeats line {lines[doc_id]}")
        corpus[doc_id], lines[doc_id] = Document(title, text), line
    if not corpus:
        raise DataFormatError(path, None, "no documents")
    return corpus


def read_queries(path: str | Path) -> dict[str, str]:
    """Read ``queries.jsonl``: ``_id`` to text."""
    path = Path(path)
    queries: dict[str, str] = {}
    lines: dict[str, int] = {}
    for line, obj in iter_jsonl(path, required=("_id", "text")):
        qid = _id(obj["_id"], path, line, "query")
        if not isinstance(obj["text"], str) or not obj["text"].strip():
            raise DataFormatError(path, line, 'a query needs a non-empty "text" string')
        if qid in queries:
            raise DataFormatError(path, line, f"query id {qid!r} repeats line {lines[qid]}")
        queries[qid], lines[qid] = obj["text"], line
    if not queries:
        raise DataFormatError(path, None, "no queries")
    return queries


def _score(raw: str, path: Path, line: int) -> int:
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if value.is_integer():
        return int(value)
    raise DataFormatError(path, line, f"score must be an integer relevance grade, found {raw!r}")


def read_qrels(
    path: str | Path, *, queries: dict[str, str] | None = None, corpus: dict[str, Any] | None = None
) -> tuple[dict[str, dict[str, int]], int]:
    """Read one ``qrels/<split>.tsv``; ids are checked against ``queries`` and ``corpus`` when given.

    Returns
    -------
    qrels, repeated
        Query id to ``{document id: score}``, and the number of exactly repeated rows that were ignored.
    """
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    first_line: dict[tuple[str, str], int] = {}
    repeated = 0
    with open_text(path) as fh:
        header_seen = False
        for line, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            fields = raw.rstrip("\r\n").split("\t")
            if not header_seen:
                names = tuple(f.strip().lower().replace("_", "-") for f in fields)
                if names != QRELS_HEADER:
                    raise DataFormatError(
                        path,
                        line,
                        f"expected the header line 'query-id<TAB>corpus-id<TAB>score', found {raw.strip()[:60]!r}",
                    )
                header_seen = True
                continue
            if len(fields) != 3:
                raise DataFormatError(
                    path, line, f"expected 3 tab-separated fields (query-id, corpus-id, score), found {len(fields)}"
                )
            qid, doc_id, score = fields[0].strip(), fields[1].strip(), _score(fields[2].strip(), path, line)
            if not qid or not doc_id:
                raise DataFormatError(path, line, "empty query-id or corpus-id")
            if queries is not None and qid not in queries:
                raise DataFormatError(path, line, f"query-id {qid!r} is not in queries.jsonl")
            if corpus is not None and doc_id not in corpus:
                raise DataFormatError(path, line, f"corpus-id {doc_id!r} is not in corpus.jsonl")
            judged = qrels.setdefault(qid, {})
            if doc_id in judged:
                if judged[doc_id] != score:
                    raise DataFormatError(
                        path,
                        line,
                        f"({qid}, {doc_id}) has score {score} here and "
                        f"{judged[doc_id]} at line {first_line[qid, doc_id]}",
                    )
                repeated += 1
                continue
            judged[doc_id] = score
            first_line[qid, doc_id] = line
    if not header_seen:
        raise DataFormatError(path, None, "empty qrels file (expected a header line and rows)")
    return qrels, repeated


def qrels_splits(path: str | Path) -> list[str]:
    """The splits a BEIR folder has qrels for (the ``.tsv`` names under ``qrels/``)."""
    folder = Path(path) / "qrels"
    return sorted(p.name[: -len(".tsv")] for p in folder.glob("*.tsv")) if folder.is_dir() else []


def load_beir(path: str | Path, split: str = "test") -> BeirData:
    """Read and validate a BEIR folder with the qrels of ``split``."""
    path = Path(path)
    if not path.is_dir():
        raise IndusError(f"{path}: expected a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    corpus = read_corpus(_find(path, "corpus"))
    queries = read_queries(_find(path, "queries"))
    qrels_path = path / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        have = ", ".join(qrels_splits(path)) or "none"
        raise IndusError(f"{path}: no qrels/{split}.tsv (splits found: {have})")
    qrels, _ = read_qrels(qrels_path, queries=queries, corpus=corpus)
    if not qrels:
        raise DataFormatError(qrels_path, None, "no judgements after the header")
    return BeirData(path, split, corpus, queries, qrels)


def check(path: str | Path) -> dict[str, int]:
    """Validate a BEIR folder (every qrels split) and count documents, queries and judgements."""
    path = Path(path)
    if not path.is_dir():
        raise IndusError(f"{path}: expected a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    corpus = read_corpus(_find(path, "corpus"))
    queries = read_queries(_find(path, "queries"))
    splits = qrels_splits(path)
    if not splits:
        raise IndusError(f"{path}: no qrels/<split>.tsv files")
    counts = {"docs": len(corpus), "queries": len(queries)}
    for split in splits:
        qrels, repeated = read_qrels(path / "qrels" / f"{split}.tsv", queries=queries, corpus=corpus)
        if not qrels:
            raise DataFormatError(path / "qrels" / f"{split}.tsv", None, "no judgements after the header")
        counts[f"{split} queries"] = len(qrels)
        counts[f"{split} qrels"] = sum(len(v) for v in qrels.values())
        counts[f"{split} relevant"] = sum(s > 0 for v in qrels.values() for s in v.values())
        if repeated:
            counts[f"{split} repeated rows"] = repeated
    return counts


def split_beir_name(name: str | Path) -> tuple[Path, str] | None:
    """``"ir/scifact:train"`` -> ``(the BEIR folder, "train")`` when the part before the last ``:`` is a BEIR folder
    with qrels for that split; ``None`` for any other name (a pair file or folder)."""
    text = str(name)
    head, sep, split = text.rpartition(":")
    if not sep or not head or not split or "/" in split or "\\" in split:
        return None
    try:
        folder = resolve_dataset(head)
    except IndusError:
        return None
    if not (folder.is_dir() and (folder / "qrels").is_dir()):
        return None
    if not (folder / "qrels" / f"{split}.tsv").is_file():
        have = ", ".join(qrels_splits(folder)) or "none"
        raise IndusError(f"{text}: {folder} has no qrels/{split}.tsv (splits found: {have})")
    return folder, split


def qrels_pairs(folder: Path, split: str) -> Iterator[tuple[str, str, str]]:
    """``(query text, document full text, document id)`` for every positive judgement (score > 0) of a BEIR split,
    in qrels order: the pairs a collection's own training judgements give. The positive is the document as the
    evaluator and the index see it (``title + " " + text``), so a mined negative and its positive look alike. A query
    whose text (case and white space ignored) is judged in another split of the folder is left out: training on a
    test query's twin would leak it."""
    qrels_path = folder / "qrels" / f"{split}.tsv"
    queries = read_queries(_find(folder, "queries"))
    qrels, _ = read_qrels(qrels_path, queries=queries)
    # a query whose text is also judged in another split (e.g. a train claim worded as a test claim) is left out
    held_out = {
        _norm(queries[qid])
        for other in qrels_splits(folder)
        if other != split
        for qid in read_qrels(folder / "qrels" / f"{other}.tsv", queries=queries)[0]
    }
    qrels = {qid: judged for qid, judged in qrels.items() if _norm(queries[qid]) not in held_out}
    wanted = {doc_id for judged in qrels.values() for doc_id, score in judged.items() if score > 0}
    corpus = _find(folder, "corpus")
    docs = {}
    for line, obj in iter_jsonl(corpus, required=("_id", "text")):
        doc_id = _id(obj["_id"], corpus, line, "document")
        if doc_id in wanted:
            docs[doc_id] = Document(obj.get("title") or "", obj["text"]).full_text()
    for qid, judged in qrels.items():
        for doc_id, score in judged.items():
            if score <= 0:
                continue
            if doc_id not in docs:
                raise DataFormatError(qrels_path, None, f"corpus-id {doc_id!r} is not in {corpus.name}")
            yield queries[qid], docs[doc_id], doc_id


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def holdout(
    path: str | Path, out: str | Path, *, split: str = "train", dev: str = "dev", fraction: float = 0.2, seed: int = 0
) -> dict[str, int]:
    """Hold out a ``fraction`` of ``split``'s queries as a new ``dev`` split, for choosing settings without test.

    Writes a BEIR folder ``out``: ``corpus`` and ``queries`` linked to ``path``'s files (copied where links are not
    possible), ``qrels/<split>.tsv`` with the remaining queries, ``qrels/<dev>.tsv`` with the held-out ones (drawn at
    random with ``seed``; queries with the same text go to the same side) and every other split copied as it is.
    Returns the number of queries per split written.
    """
    path, out = Path(path), Path(out)
    if not 0 < fraction < 1:
        raise IndusError(f"fraction must be between 0 and 1, found {fraction}")
    if (path / "qrels" / f"{dev}.tsv").is_file():
        raise IndusError(f"{path}: already has qrels/{dev}.tsv (hold out from {split} into another name)")
    data = load_beir(path, split)
    by_text: dict[str, list[str]] = {}
    for qid in data.qrels:
        by_text.setdefault(_norm(data.queries[qid]), []).append(qid)
    groups = sorted(by_text.values())
    random.Random(seed).shuffle(groups)
    n_dev = max(1, round(fraction * len(groups)))
    held = {qid for group in groups[:n_dev] for qid in group}
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    for stem in ("corpus", "queries"):
        src = _find(path, stem)
        dst = out / src.name
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        try:
            dst.symlink_to(src.resolve())
        except OSError:
            shutil.copyfile(src, dst)
    counts: dict[str, int] = {}
    for name, side in ((split, [q for q in data.qrels if q not in held]), (dev, [q for q in data.qrels if q in held])):
        rows = [f"{q}\t{d}\t{s}" for q in side for d, s in data.qrels[q].items()]
        atomic_write_text(out / "qrels" / f"{name}.tsv", "\n".join(["query-id\tcorpus-id\tscore", *rows]) + "\n")
        counts[name] = len(side)
    for other in qrels_splits(path):
        if other not in (split, dev):
            source = path / "qrels" / f"{other}.tsv"
            counts[other] = len(read_qrels(source)[0])  # read (and checked) before it is copied
            shutil.copyfile(source, out / "qrels" / f"{other}.tsv")
    return counts
