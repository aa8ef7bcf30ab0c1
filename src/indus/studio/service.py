"""What the studio does, as plain functions over a :class:`~indus.studio.db.Store` and a searcher.

The web pages and the JSON API are both clients of :class:`Studio`: a page renders what a method returns, the API
returns it as JSON. Bad input raises :class:`~indus.errors.IndusError` (HTTP 400), :class:`NotFound` (404) or
:class:`Forbidden` (403), each with a one-line message.

Pooling (TREC): each query is searched by every pool system (``bm25``, ``dense``, ``hybrid`` from the index, or a
bi-encoder spec such as a model folder, which embeds the index's documents once at start-up); the union of their
top ``depth`` documents is shuffled by a seed and the query id, and the judge sees it without system names.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select

from indus.errors import IndusError
from indus.evaluation.ir import DenseRetriever
from indus.retriever.bi_encoder import load_bi_encoder
from indus.studio import db
from indus.studio.db import Store, now
from indus.studio.passages import Passage

ANNOTATOR = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,39}$")
MAX_QUESTION_CHARS = 1000
INDEX_MODES = ("bm25", "dense", "hybrid")


class NotFound(IndusError):
    """An unknown passage, query or document (HTTP 404)."""


class Forbidden(IndusError):
    """A write without the right to write (HTTP 403)."""


class SearchBackend(Protocol):
    """What the studio needs from a searcher (:class:`indus.retriever.search.Searcher` provides it)."""

    modes: tuple[str, ...]
    default_mode: str

    def search(self, query: str, k: int = 10, mode: str | None = None) -> list[Any]: ...

    def search_many(self, queries: list[str], k: int = 10, mode: str | None = None) -> list[list[Any]]: ...

    def doc(self, doc_id: str) -> Any: ...

    def snippet(self, text: str, query: str, width: int = 240) -> list[tuple[str, bool]]: ...

    def __iter__(self) -> Iterable[Any]: ...


def validate_annotator(name: Any) -> str:
    """An annotator name: a letter, then up to 39 letters, digits, ``.``, ``_`` or ``-``."""
    if not isinstance(name, str) or not ANNOTATOR.match(name):
        raise IndusError("annotator name must start with a letter and hold up to 40 letters, digits, '.', '_' or '-'")
    return name


# --------------------------------------------------------------------------------------------------- results


@dataclass
class SearchResult:
    """One search: the query, the mode searched, the time it took and the hits."""

    query: str
    mode: str
    took_ms: float
    hits: list[Any]

    def to_json(self) -> dict[str, Any]:
        """The ``/api/search`` answer."""
        return {
            "query": self.query,
            "mode": self.mode,
            "took_ms": round(self.took_ms, 3),
            "results": [{"id": h.id, "title": h.title, "text": h.text, "score": float(h.score)} for h in self.hits],
        }


@dataclass
class PoolItem:
    """A pooled document as the judge sees it (no system names), with this annotator's grade if any."""

    doc_id: str
    title: str
    text: str
    position: int
    grade: int | None = None


@dataclass
class AnnotatorProgress:
    """Progress of one annotator (or of everyone, ``annotator="(all)"``)."""

    annotator: str
    passages_seen: int = 0
    questions: int = 0
    unanswerable: int = 0
    no_question: int = 0
    queries_judged: int = 0
    judgements: int = 0
    pool_depth_covered: float = 0.0
    kappa: float | None = None
    kappa_pairs: int = 0

    def to_json(self) -> dict[str, Any]:
        """The fields as a dict."""
        return asdict(self)


@dataclass
class Progress:
    """Per-annotator and total progress, and the pool's size."""

    annotators: list[AnnotatorProgress]
    total: AnnotatorProgress
    queries: int
    pooled_queries: int
    pool_depth: int
    systems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``/api/progress`` answer."""
        return {
            "annotators": [a.to_json() for a in self.annotators],
            "total": self.total.to_json(),
            "queries": self.queries,
            "pooled_queries": self.pooled_queries,
            "pool_depth": self.pool_depth,
            "systems": self.systems,
        }


# ----------------------------------------------------------------------------------------------- pool systems


class PoolSystem:
    """A system whose top ``depth`` enters the pool: a mode of the index or a bi-encoder over its documents."""

    def __init__(self, name: str, run: Callable[[list[str], int], list[list[str]]]) -> None:
        self.name, self._run = name, run

    def ranked(self, queries: list[str], depth: int) -> list[list[str]]:
        """Each query's top ``depth`` document ids, best first."""
        return self._run(queries, depth)


def make_pool_systems(specs: list[str], searcher: SearchBackend, *, progress: bool = True) -> list[PoolSystem]:
    """Pool systems from ``--pool`` values: ``bm25``/``dense``/``hybrid`` or a bi-encoder spec (model folder)."""
    systems: list[PoolSystem] = []
    for spec in dict.fromkeys(specs):
        if spec in INDEX_MODES:
            if spec not in searcher.modes:
                raise IndusError(f"--pool {spec}: this index offers {', '.join(searcher.modes)}")
            systems.append(
                PoolSystem(
                    spec, lambda qs, k, m=spec: [[h.id for h in hits] for hits in searcher.search_many(qs, k, m)]
                )
            )
            continue

        retriever = DenseRetriever(load_bi_encoder(spec), progress=progress)
        docs = list(searcher)
        retriever.index([d.id for d in docs], [f"{d.title} {d.text}".strip() for d in docs])
        name = Path(spec).name if Path(spec).exists() else spec
        systems.append(PoolSystem(name, lambda qs, k, r=retriever: [[d for d, _ in hits] for hits in r.search(qs, k)]))
    if not systems:
        raise IndusError("no pool systems: give --pool bm25, --pool dense, --pool hybrid or --pool MODEL_DIR")
    return systems


def _insert_ignore(conn: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert rows, skipping those whose primary key exists (SQLite and PostgreSQL upsert; else one by one)."""
    if not rows:
        return
    name = conn.dialect.name
    if name in ("sqlite", "postgresql"):
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        conn.execute(insert(table).on_conflict_do_nothing(), rows)
        return
    keys = [c.name for c in table.primary_key.columns]
    for row in rows:
        where = [table.c[k] == row[k] for k in keys]
        if conn.execute(select(*[table.c[k] for k in keys]).where(*where)).first() is None:
            conn.execute(table.insert().values(**row))


# ---------------------------------------------------------------------------------------------------- studio


class Studio:
    """Search, question writing, pooled judging and progress over one index and one database.

    Parameters
    ----------
    store
        The database.
    searcher
        The index's searcher (or ``None``: the write and progress pages still work, search and pooling do not).
    passages
        The passages writers see, in order (:func:`indus.studio.passages.load_passages`).
    pool_systems
        The systems whose top ``pool_depth`` is pooled for judging.
    pool_depth
        How deep each system's ranking enters the pool.
    seed
        Seeds the order of each pool.
    """

    def __init__(
        self,
        store: Store,
        searcher: SearchBackend | None,
        passages: list[Passage] | None = None,
        pool_systems: list[PoolSystem] | None = None,
        *,
        pool_depth: int = 10,
        seed: int = 0,
    ) -> None:
        if pool_depth < 1:
            raise IndusError(f"pool depth must be at least 1, got {pool_depth}")
        self.store, self.searcher, self.pool_depth, self.seed = store, searcher, pool_depth, seed
        self.passages = list(passages or [])
        if searcher is not None:
            # a passage id that names a different index document would mix two texts under one id on export
            clash = [
                p
                for p in self.passages
                if (d := searcher.doc(p.id)) is not None
                and f"{d.title} {d.text}".strip() != f"{p.title} {p.text}".strip()
            ]
            if clash:
                self.passages = [Passage(f"passage:{p.id}", p.doc_id, p.title, p.text) for p in self.passages]
        self._passage = {p.id: p for p in self.passages}
        self._position = {p.id: i for i, p in enumerate(self.passages)}
        self.pool_systems = list(pool_systems or [])

    # ------------------------------------------------------------------------------------------ search

    def search(self, query: str, k: int = 10, mode: str | None = None) -> SearchResult:
        """Search the index; the time taken is the search's own (no rendering)."""
        if self.searcher is None:
            raise IndusError("this studio has no index to search (start it with --index)")
        start = time.perf_counter()
        hits = self.searcher.search(query, k=k, mode=mode or None)
        took = (time.perf_counter() - start) * 1000
        return SearchResult(query, mode or self.searcher.default_mode, took, hits)

    # ------------------------------------------------------------------------------------------ writing

    def passage(self, passage_id: str) -> Passage:
        """A passage by id (from the corpus, or stored by an earlier run)."""
        if passage_id in self._passage:
            return self._passage[passage_id]
        with self.store.read() as conn:
            row = conn.execute(select(db.passages).where(db.passages.c.id == passage_id)).first()
        if row is None:
            raise NotFound(f"unknown passage {passage_id!r}")
        return Passage(row.id, row.doc_id, row.title, row.text)

    def next_passage(self, annotator: str) -> Passage | None:
        """The first passage this annotator has not yet annotated (``None`` when all are done)."""
        validate_annotator(annotator)
        with self.store.read() as conn:
            seen = set(
                conn.execute(
                    select(db.annotations.c.passage_id).where(db.annotations.c.annotator == annotator)
                ).scalars()
            )
        return next((p for p in self.passages if p.id not in seen), None)

    def annotate(
        self,
        annotator: str,
        passage_id: str,
        kind: str,
        question: str | None = None,
        answer_start: int | None = None,
        answer_text: str | None = None,
    ) -> dict[str, Any]:
        """Record a question (with its answer span), an unanswerable question or "no good question".

        A question becomes a QA item and an IR query (id ``w<annotation id>``) whose relevant document is the
        passage; the query's judging pool is built at once. Returns ``{"annotation_id", "query_id"}``.
        """
        validate_annotator(annotator)
        if kind not in db.KINDS:
            raise IndusError(f"unknown kind {kind!r}; expected one of {', '.join(db.KINDS)}")
        passage = self.passage(passage_id)
        question = (question or "").strip()
        if kind == "no_question":
            question, answer_start, answer_text = "", None, None
        else:
            if not question:
                raise IndusError("the question is empty")
            if len(question) > MAX_QUESTION_CHARS:
                raise IndusError(f"the question has {len(question)} characters; the limit is {MAX_QUESTION_CHARS}")
        if kind == "question":
            if isinstance(answer_start, bool) or not isinstance(answer_start, int) or not answer_text:
                raise IndusError("a question needs its answer: select a span of the passage")
            end = answer_start + len(answer_text)
            if answer_start < 0 or end > len(passage.text):
                raise IndusError(
                    f"the answer span {answer_start}..{end} lies outside the passage (0..{len(passage.text)})"
                )
            if passage.text[answer_start:end] != answer_text:
                raise IndusError(f"the answer text does not match the passage at offset {answer_start}")
            if not answer_text.strip():
                raise IndusError("the answer span is blank")
        elif kind == "unanswerable":
            answer_start, answer_text = None, None
        stamp = now()
        with self.store.write() as conn:
            _insert_ignore(
                conn,
                db.passages,
                [
                    {
                        "id": passage.id,
                        "doc_id": passage.doc_id,
                        "title": passage.title,
                        "text": passage.text,
                        "position": self._position.get(passage.id, -1),
                    }
                ],
            )
            ann_id = conn.execute(
                db.annotations.insert().values(
                    passage_id=passage.id,
                    annotator=annotator,
                    kind=kind,
                    question=question or None,
                    answer_start=answer_start,
                    answer_text=answer_text,
                    created_at=stamp,
                )
            ).inserted_primary_key[0]
            query_id = None
            if kind == "question":
                query_id = f"w{ann_id}"
                conn.execute(
                    db.queries.insert().values(
                        id=query_id,
                        text=question,
                        source="written",
                        annotation_id=ann_id,
                        annotator=annotator,
                        created_at=stamp,
                    )
                )
        if query_id is not None and self.pool_systems:
            self.build_pools([query_id], progress=False)
        return {"annotation_id": ann_id, "query_id": query_id}

    # ------------------------------------------------------------------------------------------ queries

    def add_queries(self, items: list[tuple[str, str]]) -> int:
        """Store queries loaded from a file (``(id, text)``); ones already stored are kept. Returns how many
        were new."""
        stamp = now()
        with self.store.write() as conn:
            have = set(conn.execute(select(db.queries.c.id)).scalars())
            rows = [
                {
                    "id": qid,
                    "text": text,
                    "source": "file",
                    "annotation_id": None,
                    "annotator": None,
                    "created_at": stamp,
                }
                for qid, text in items
                if qid not in have
            ]
            if rows:
                conn.execute(db.queries.insert(), rows)
        return len(rows)

    def queries(self, annotator: str | None = None) -> list[dict[str, Any]]:
        """Every query with its pool size, how many annotators judged it, and what this annotator judged."""
        with self.store.read() as conn:
            rows = conn.execute(select(db.queries).order_by(db.queries.c.created_at, db.queries.c.id)).all()
            sizes = dict(
                conn.execute(select(db.pool_order.c.query_id, func.count()).group_by(db.pool_order.c.query_id)).all()
            )
            judged = defaultdict(set)
            mine: dict[str, int] = defaultdict(int)
            for qid, who in conn.execute(select(db.judgements.c.query_id, db.judgements.c.annotator)).all():
                judged[qid].add(who)
                if who == annotator:
                    mine[qid] += 1
        return [
            {
                "id": r.id,
                "text": r.text,
                "source": r.source,
                "pool_size": sizes.get(r.id, 0),
                "judged_by": len(judged[r.id]),
                "judged_by_me": mine.get(r.id, 0),
            }
            for r in rows
        ]

    def query(self, query_id: str) -> dict[str, Any]:
        """A query by id."""
        with self.store.read() as conn:
            row = conn.execute(select(db.queries).where(db.queries.c.id == query_id)).first()
        if row is None:
            raise NotFound(f"unknown query {query_id!r}")
        return {"id": row.id, "text": row.text, "source": row.source}

    # ---------------------------------------------------------------------------------------------- pool

    def build_pools(self, query_ids: list[str] | None = None, *, progress: bool = True, batch: int = 32) -> int:
        """Pool every query (or ``query_ids``) that has no pool yet; returns how many were pooled."""
        if not self.pool_systems:
            return 0
        if self.searcher is None:
            raise IndusError("pooling needs an index (--index)")
        with self.store.read() as conn:
            pooled = set(conn.execute(select(db.pool_order.c.query_id).distinct()).scalars())
            stmt = select(db.queries.c.id, db.queries.c.text).order_by(db.queries.c.created_at, db.queries.c.id)
            todo = [
                (q, t) for q, t in conn.execute(stmt).all() if q not in pooled and (query_ids is None or q in query_ids)
            ]
        if not todo:
            return 0
        from rich.progress import Progress as Bar

        with Bar(disable=not progress, transient=False) as bar:
            task = bar.add_task(f"pooling {len(todo)} queries", total=len(todo))
            for i in range(0, len(todo), batch):
                chunk = todo[i : i + batch]
                texts = [t for _, t in chunk]
                runs = {s.name: s.ranked(texts, self.pool_depth) for s in self.pool_systems}
                for j, (qid, _) in enumerate(chunk):
                    self._store_pool(qid, {name: ranked[j] for name, ranked in runs.items()})
                bar.advance(task, len(chunk))
        return len(todo)

    def _store_pool(self, query_id: str, runs: dict[str, list[str]]) -> None:
        union = list(dict.fromkeys(d for ranked in runs.values() for d in ranked))
        random.Random(f"{self.seed}:{query_id}").shuffle(union)
        docs = [self.searcher.doc(d) for d in union]
        with self.store.write() as conn:
            if conn.execute(select(db.pool_order.c.query_id).where(db.pool_order.c.query_id == query_id)).first():
                return  # pooled by another request meanwhile
            _insert_ignore(conn, db.documents, [{"id": d.id, "title": d.title, "text": d.text} for d in docs])
            if union:
                conn.execute(
                    db.pool.insert(),
                    [
                        {"query_id": query_id, "system": name, "rank": r, "doc_id": d}
                        for name, ranked in runs.items()
                        for r, d in enumerate(ranked, start=1)
                    ],
                )
                conn.execute(
                    db.pool_order.insert(),
                    [{"query_id": query_id, "doc_id": d, "position": p} for p, d in enumerate(union)],
                )

    def pool(self, query_id: str, annotator: str | None = None) -> list[PoolItem]:
        """A query's pool in its shuffled order, with ``annotator``'s grades (``None`` where not judged yet)."""
        self.query(query_id)
        if self.pool_systems:
            self.build_pools([query_id], progress=False)
        po, d, j = db.pool_order, db.documents, db.judgements
        with self.store.read() as conn:
            rows = conn.execute(
                select(po.c.doc_id, po.c.position, d.c.title, d.c.text)
                .join(d, d.c.id == po.c.doc_id)
                .where(po.c.query_id == query_id)
                .order_by(po.c.position)
            ).all()
            grades = (
                dict(
                    conn.execute(
                        select(j.c.doc_id, j.c.grade).where(j.c.query_id == query_id, j.c.annotator == annotator)
                    ).all()
                )
                if annotator
                else {}
            )
        return [PoolItem(r.doc_id, r.title, r.text, r.position, grades.get(r.doc_id)) for r in rows]

    # ------------------------------------------------------------------------------------------- judging

    def judge(self, annotator: str, query_id: str, grades: dict[str, Any]) -> dict[str, int]:
        """Record (or change) this annotator's grades ``{doc_id: 2 | 1 | 0}`` for documents of a query's pool."""
        validate_annotator(annotator)
        self.query(query_id)
        if not isinstance(grades, dict) or not grades:
            raise IndusError("no judgements given (expected {doc_id: 2, 1 or 0})")
        with self.store.read() as conn:
            in_pool = set(
                conn.execute(select(db.pool_order.c.doc_id).where(db.pool_order.c.query_id == query_id)).scalars()
            )
        clean: dict[str, int] = {}
        for doc_id, grade in grades.items():
            if doc_id not in in_pool:
                raise IndusError(f"document {doc_id!r} is not in the pool of query {query_id!r}")
            if isinstance(grade, str) and grade.strip().lstrip("-").isdigit():
                grade = int(grade)
            if isinstance(grade, bool) or grade not in db.GRADES:
                raise IndusError(f"grade for {doc_id!r} must be 2 (relevant), 1 (partly) or 0 (not relevant)")
            clean[doc_id] = int(grade)
        stamp, j = now(), db.judgements
        added = changed = 0
        with self.store.write() as conn:
            have = dict(
                conn.execute(
                    select(j.c.doc_id, j.c.id).where(j.c.query_id == query_id, j.c.annotator == annotator)
                ).all()
            )
            for doc_id, grade in clean.items():
                if doc_id in have:
                    conn.execute(j.update().where(j.c.id == have[doc_id]).values(grade=grade, updated_at=stamp))
                    changed += 1
                else:
                    conn.execute(
                        j.insert().values(
                            query_id=query_id,
                            doc_id=doc_id,
                            annotator=annotator,
                            grade=grade,
                            created_at=stamp,
                            updated_at=stamp,
                        )
                    )
                    added += 1
        return {"added": added, "changed": changed, "pool_size": len(in_pool)}

    # ------------------------------------------------------------------------------------------ progress

    def progress(self) -> Progress:
        """Per annotator and in total: passages seen, questions, judged queries, pool depth covered, kappa."""
        return compute_progress(self.store, self.pool_depth)


def judged_depth(ranked: list[str], judged: set[str], full: int | None = None) -> int:
    """The depth to which every document of ``ranked`` (best first) is judged; ``full`` when all of it is (a
    system that returned fewer documents than the pool depth is covered once all it returned is judged)."""
    depth = 0
    for doc_id in ranked:
        if doc_id not in judged:
            return depth
        depth += 1
    return depth if full is None else max(depth, full)


def kappa(pairs: list[tuple[int, int]]) -> float | None:
    """Cohen's kappa of paired grades (scikit-learn); ``None`` without pairs or when chance agreement is total."""
    if not pairs:
        return None

    from sklearn.metrics import cohen_kappa_score

    a, b = zip(*pairs, strict=True)
    if len(set(a) | set(b)) < 2:
        return None  # everyone gave one grade: kappa is 0/0
    value = float(cohen_kappa_score(a, b, labels=sorted(db.GRADES)))
    return None if math.isnan(value) else value


def compute_progress(store: Store, pool_depth: int) -> Progress:
    """:meth:`Studio.progress` from the database alone (the export report uses it too)."""
    a, j, p = db.annotations, db.judgements, db.pool
    with store.read() as conn:
        anns = conn.execute(select(a.c.annotator, a.c.passage_id, a.c.kind)).all()
        judg = conn.execute(select(j.c.annotator, j.c.query_id, j.c.doc_id, j.c.grade)).all()
        pool_rows = conn.execute(
            select(p.c.query_id, p.c.system, p.c.rank, p.c.doc_id).order_by(p.c.query_id, p.c.system, p.c.rank)
        ).all()
        n_queries = conn.execute(select(func.count()).select_from(db.queries)).scalar()
    runs: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for qid, system, _, doc_id in pool_rows:
        runs[qid][system].append(doc_id)
    systems = sorted({s for r in runs.values() for s in r})
    by_item: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for who, qid, doc_id, grade in judg:
        by_item[(qid, doc_id)][who] = grade

    def summarise(name: str, keep: Callable[[str], bool]) -> AnnotatorProgress:
        out = AnnotatorProgress(name)
        mine = [r for r in anns if keep(r.annotator)]
        out.passages_seen = len({r.passage_id for r in mine})
        out.questions = sum(r.kind == "question" for r in mine)
        out.unanswerable = sum(r.kind == "unanswerable" for r in mine)
        out.no_question = sum(r.kind == "no_question" for r in mine)
        judged: dict[str, set[str]] = defaultdict(set)
        for who, qid, doc_id, _ in judg:
            if keep(who):
                judged[qid].add(doc_id)
                out.judgements += 1
        out.queries_judged = len(judged)
        depths = [
            min((judged_depth(r, judged[qid], pool_depth) for r in runs[qid].values()), default=0)
            for qid in judged
            if qid in runs
        ]
        out.pool_depth_covered = round(sum(depths) / len(depths), 2) if depths else 0.0
        pairs = []
        for grades in by_item.values():
            names = sorted(grades)
            for x in range(len(names)):
                for y in range(x + 1, len(names)):
                    if keep(names[x]) or keep(names[y]):
                        first, second = (names[x], names[y]) if keep(names[x]) else (names[y], names[x])
                        pairs.append((grades[first], grades[second]))
        out.kappa, out.kappa_pairs = kappa(pairs), len(pairs)
        return out

    names = sorted({r.annotator for r in anns} | {r.annotator for r in judg})
    return Progress(
        [summarise(n, lambda who, n=n: who == n) for n in names],
        summarise("(all)", lambda who: True),
        n_queries,
        len(runs),
        pool_depth,
        systems,
    )
