"""``indus studio export``: the database as a benchmark in standard formats.

Writes, atomically (a killed export leaves no folder a later run trusts)::

    OUT/qa.json              SQuAD v2: one article per passage; questions with their answer span (exact character
                             offsets into the context) and unanswerable questions (is_impossible, no answers)
    OUT/ir/corpus.jsonl      BEIR: the passages written on, the pooled documents and, when the index is readable,
                             the rest of its collection (so retrieval searches the whole collection)
    OUT/ir/queries.jsonl     the queries that have judgements (written questions and judged queries)
    OUT/ir/qrels/test.tsv    graded: a written question gives its passage 2; judged documents get the mean of the
                             annotators' grades (2 relevant, 1 partly, 0 not) rounded half up
    OUT/report.md            counts, agreement (Cohen's kappa) and the judged fraction of each system's top 10

Both parts pass ``indus data check``; ``indus eval qa --data OUT/qa.json`` and ``indus eval ir --data OUT/ir`` run on
them unchanged.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import select

from indus.atomic import atomic_directory
from indus.errors import IndusError
from indus.studio import db
from indus.studio.db import Store
from indus.studio.service import compute_progress, judged_depth

REPORT_DEPTH = 10


def combined_grade(grades: list[int]) -> int:
    """The mean of several annotators' grades, rounded half up (2 and 1 give 2; 1 and 0 give 1; 2 and 0 give 1)."""
    return int(sum(grades) * 2 // len(grades) + 1) // 2


def _collection(index: str | Path | None) -> tuple[list[tuple[str, str, str]], str]:
    """The index's whole collection, and a line saying where it came from (or why it is absent)."""
    if index is None:
        return [], "no index recorded: the corpus holds the passages and the pooled documents only"
    path = Path(index) / "docs.jsonl"
    if not path.is_file():
        return [], f"{index}: no docs.jsonl; the corpus holds the passages and the pooled documents only"
    docs = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            try:
                row = json.loads(line)
                docs.append((str(row["id"]), row["title"], row["text"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise IndusError(f'{path}:{lineno}: expected {{"id", "title", "text"}}') from None
    return docs, f"the corpus adds the {len(docs):,} documents of the index {index}"


def export(
    store: Store, out: str | Path, *, index: str | Path | None = None, progress: bool = True, overwrite: bool = False
) -> dict[str, Any]:
    """Write the benchmark (see the module docstring) to ``out``; returns its counts.

    Parameters
    ----------
    store
        The studio database.
    out
        The output folder (refused when it exists and is not empty, unless ``overwrite``).
    index
        The index whose collection joins the corpus (default: the one the studio served, if still readable).
    """
    from rich.progress import Progress as Bar

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise IndusError(f"{out}: exists and is not empty; choose a new --out or pass --overwrite")
    index = index if index is not None else store.get_meta("index")
    a, q = db.annotations, db.queries
    with store.read() as conn:
        passages = {r.id: r for r in conn.execute(select(db.passages).order_by(db.passages.c.position)).all()}
        documents = {r.id: r for r in conn.execute(select(db.documents)).all()}
        anns = conn.execute(select(a).order_by(a.c.id)).all()
        queries = conn.execute(select(q).order_by(q.c.created_at, q.c.id)).all()
        judgements = conn.execute(select(db.judgements)).all()
    collection, collection_note = _collection(index)
    with Bar(disable=not progress) as bar:
        task = bar.add_task("export", total=5)
        # QA: one article per passage with questions, in passage order
        qas: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in anns:
            if r.kind == "question":
                qas[r.passage_id].append(
                    {
                        "id": f"w{r.id}",
                        "question": r.question,
                        "is_impossible": False,
                        "answers": [{"text": r.answer_text, "answer_start": r.answer_start}],
                    }
                )
            elif r.kind == "unanswerable":
                qas[r.passage_id].append(
                    {"id": f"w{r.id}", "question": r.question, "is_impossible": True, "answers": []}
                )
        articles = [
            {
                "title": passages[pid].title or passages[pid].doc_id,
                "document_id": n,
                "paragraphs": [{"context": passages[pid].text, "qas": qas[pid]}],
            }
            for n, pid in enumerate(p for p in passages if qas.get(p))
        ]
        bar.advance(task)
        # IR qrels: written questions -> their passage (2); judgements -> the rounded mean grade
        grades: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for r in judgements:
            grades[r.query_id][r.doc_id].append(r.grade)
        qrels: dict[str, dict[str, int]] = defaultdict(dict)
        for qid, docs in grades.items():
            for doc_id, gs in docs.items():
                qrels[qid][doc_id] = combined_grade(gs)
        for r in queries:
            if r.source == "written" and r.annotation_id is not None:
                passage_id = next(x.passage_id for x in anns if x.id == r.annotation_id)
                qrels[r.id][passage_id] = 2
        bar.advance(task)
        corpus: dict[str, tuple[str, str]] = {}
        for doc_id, title, text in collection:
            corpus[doc_id] = (title, text)
        for r in documents.values():
            corpus.setdefault(r.id, (r.title, r.text))
        for r in passages.values():
            if (
                r.id in corpus
                and corpus[r.id] != (r.title, r.text)
                and f"{corpus[r.id][0]} {corpus[r.id][1]}".strip() != f"{r.title} {r.text}".strip()
            ):
                raise IndusError(
                    f"passage id {r.id!r} names a different document of the index; export with another --index or none"
                )
            corpus.setdefault(r.id, (r.title, r.text))
        bar.advance(task)
        ir_queries = [r for r in queries if qrels.get(r.id)]
        counts = {
            "passages_seen": len({r.passage_id for r in anns}),
            "questions": sum(r.kind == "question" for r in anns),
            "unanswerable": sum(r.kind == "unanswerable" for r in anns),
            "no_question": sum(r.kind == "no_question" for r in anns),
            "qa_items": sum(len(v) for v in qas.values()),
            "ir_queries": len(ir_queries),
            "qrels": sum(len(v) for v in qrels.values()),
            "judgements": len(judgements),
            "corpus": len(corpus),
        }
        with atomic_directory(out) as tmp:
            (tmp / "ir" / "qrels").mkdir(parents=True)
            (tmp / "qa.json").write_text(
                json.dumps(
                    {"version": "v2.0", "source": "indus studio", "data": articles}, ensure_ascii=False, indent=1
                )
                + "\n",
                encoding="utf-8",
            )
            with (tmp / "ir" / "corpus.jsonl").open("w", encoding="utf-8") as fh:
                for doc_id, (title, text) in corpus.items():
                    fh.write(json.dumps({"_id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")
            with (tmp / "ir" / "queries.jsonl").open("w", encoding="utf-8") as fh:
                for r in ir_queries:
                    fh.write(json.dumps({"_id": r.id, "text": r.text}, ensure_ascii=False) + "\n")
            with (tmp / "ir" / "qrels" / "test.tsv").open("w", encoding="utf-8") as fh:
                fh.write("query-id\tcorpus-id\tscore\n")
                for r in ir_queries:
                    for doc_id, grade in qrels[r.id].items():
                        fh.write(f"{r.id}\t{doc_id}\t{grade}\n")
            bar.advance(task)
            (tmp / "report.md").write_text(report(store, counts, collection_note), encoding="utf-8")
            bar.advance(task)
    return {"out": str(out), **counts}


def judged_fraction(store: Store, depth: int = REPORT_DEPTH) -> dict[str, dict[str, float]]:
    """For each pooled system: the fraction of its top ``depth`` judged by anyone, over the queries judged, and
    the mean depth to which its ranking is fully judged."""
    with store.read() as conn:
        rows = conn.execute(
            select(db.pool.c.query_id, db.pool.c.system, db.pool.c.rank, db.pool.c.doc_id).order_by(db.pool.c.rank)
        ).all()
        judged: dict[str, set[str]] = defaultdict(set)
        for qid, doc_id in conn.execute(select(db.judgements.c.query_id, db.judgements.c.doc_id)).all():
            judged[qid].add(doc_id)
    runs: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for qid, system, rank, doc_id in rows:
        if rank <= depth and qid in judged:
            runs[system][qid].append(doc_id)
    out = {}
    for system, per_query in sorted(runs.items()):
        top = [(d in judged[qid]) for qid, ranked in per_query.items() for d in ranked]
        out[system] = {
            "queries": len(per_query),
            "judged_fraction": sum(top) / len(top) if top else 0.0,
            "judged_depth": sum(judged_depth(r, judged[q]) for q, r in per_query.items()) / len(per_query),
        }
    return out


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def report(store: Store, counts: dict[str, Any], collection_note: str) -> str:
    """The export's ``report.md``."""
    prog = compute_progress(store, REPORT_DEPTH)
    lines = [
        "# indus studio benchmark",
        "",
        f"Exported {db.now()} from `{store.engine.url}`.",
        "",
        "## Counts",
        "",
        "| item | count |",
        "|---|---:|",
    ]
    lines += [f"| {k.replace('_', ' ')} | {v:,} |" for k, v in counts.items()]
    lines += [
        "",
        collection_note + ".",
        "",
        "## Annotators",
        "",
        "| annotator | passages seen | questions | unanswerable | no good question | queries judged | "
        "judgements | pool depth covered | kappa vs others | pairs |",
        "|---|" + "---:|" * 9,
    ]
    for p in [*prog.annotators, prog.total]:
        lines.append(
            f"| {p.annotator} | {p.passages_seen} | {p.questions} | {p.unanswerable} | {p.no_question} | "
            f"{p.queries_judged} | {p.judgements} | {p.pool_depth_covered:.1f} | {_fmt(p.kappa)} | "
            f"{p.kappa_pairs} |"
        )
    lines += [
        "",
        "## Agreement",
        "",
        f"Cohen's kappa (scikit-learn, grades 2 / 1 / 0) over {prog.total.kappa_pairs} doubly judged "
        f"(query, document) pairs: {_fmt(prog.total.kappa)}. Where several annotators judged a document, "
        "the qrels hold the mean grade rounded half up.",
        "",
        f"## Judged fraction of each system's top {REPORT_DEPTH}",
        "",
        "| system | queries | judged fraction | fully judged to depth |",
        "|---|---:|---:|---:|",
    ]
    for system, row in judged_fraction(store).items():
        lines.append(f"| {system} | {row['queries']} | {row['judged_fraction']:.3f} | {row['judged_depth']:.1f} |")
    return "\n".join(lines) + "\n"
