"""Retrieval metrics with pytrec_eval (trec_eval's semantics): nDCG@10, Recall@10, Recall@100, MRR@10.

- nDCG@10 is trec_eval's ``ndcg_cut_10``: gain = the graded relevance, discount log2(rank + 1), ideal ranking from
  the qrels.
- Recall@k is ``recall_k``: relevant documents (score >= 1) in the top k over all relevant documents.
- MRR@10 is ``recip_rank`` on the run cut to its top 10: pytrec_eval's ``recip_rank`` has no cut, so a first
  relevant document at rank 11 would otherwise count 1/11.

Rankings follow trec_eval: score descending, ties broken by document id descending; the cut to 10 for MRR uses
that same order, so it agrees with ``ndcg_cut_10``. Means run over every query of the qrels (the queries judged
in the split); a judged query missing from the run, or with an empty ranking, scores 0 on every metric
(pytrec_eval alone would leave it out of the mean).

Example
-------
>>> qrels = {"q1": {"d1": 1}}
>>> run = {"q1": {"d2": 0.9, "d1": 0.5}}
>>> score_run(run, qrels)["mrr@10"]
0.5
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from indus.atomic import atomic_write_text

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
_TREC = {"ndcg@10": "ndcg_cut_10", "recall@10": "recall_10", "recall@100": "recall_100"}


def trec_order(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    """``(doc_id, score)`` pairs in trec_eval's ranking order (score descending, then doc id descending)."""
    return sorted(scores.items(), key=lambda item: (float(item[1]), item[0]), reverse=True)


def truncate_run(run: Mapping[str, Mapping[str, float]], k: int) -> dict[str, dict[str, float]]:
    """Each query's top ``k`` documents in trec_eval order."""
    return {qid: dict(trec_order(docs)[:k]) for qid, docs in run.items()}


def score_run(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    ignore_identical_ids: bool = False,
    per_query: bool = False,
) -> dict:
    """Mean nDCG@10, Recall@10, Recall@100 and MRR@10 of ``run`` against ``qrels``.

    Parameters
    ----------
    run
        Query id to ``{document id: score}`` (higher is better); queries not in ``qrels`` are ignored.
    qrels
        Query id to ``{document id: integer relevance}``.
    ignore_identical_ids
        Drop a retrieved document whose id equals the query id (BEIR's evaluation default, for corpora where
        queries are also documents).
    per_query
        Also return ``per_query``: query id to its four metrics.

    Returns
    -------
    dict
        ``ndcg@10``, ``recall@10``, ``recall@100``, ``mrr@10`` and ``queries`` (the number averaged over).
    """
    import pytrec_eval

    if not qrels:
        raise ValueError("no judged queries (empty qrels)")
    clean_qrels = {str(q): {str(d): int(s) for d, s in docs.items()} for q, docs in qrels.items()}
    clean_run: dict[str, dict[str, float]] = {}
    for qid in clean_qrels:
        docs = {str(d): float(s) for d, s in run.get(qid, {}).items()}
        if ignore_identical_ids:
            docs.pop(qid, None)
        clean_run[qid] = docs
    full = pytrec_eval.RelevanceEvaluator(clean_qrels, {"ndcg_cut.10", "recall.10,100"}).evaluate(clean_run)
    top10 = pytrec_eval.RelevanceEvaluator(clean_qrels, {"recip_rank"}).evaluate(truncate_run(clean_run, 10))
    table: dict[str, dict[str, float]] = {}
    for qid in clean_qrels:
        row = {name: full.get(qid, {}).get(measure, 0.0) for name, measure in _TREC.items()}
        row["mrr@10"] = top10.get(qid, {}).get("recip_rank", 0.0)
        table[qid] = row
    out: dict = {name: sum(r[name] for r in table.values()) / len(table) for name in METRICS}
    out["queries"] = len(table)
    if per_query:
        out["per_query"] = table
    return out


def write_trec_run(path: str | Path, run: Mapping[str, Mapping[str, float]], tag: str = "indus") -> Path:
    """Write ``run`` as a TREC run file (``qid Q0 docid rank score tag``, ranks from 1), atomically."""
    lines = []
    for qid, docs in run.items():
        for rank, (doc_id, score) in enumerate(trec_order(docs), start=1):
            lines.append(f"{qid} Q0 {doc_id} {rank} {score:.6f} {tag}")
    return atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
