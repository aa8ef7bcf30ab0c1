"""SQuAD exact match and F1, as the official v1.1 / v2.0 evaluation scripts compute them.

``evaluate.load("squad")`` needs a hub and fails offline, so the official logic is reproduced here: answers are
normalised (lower-case, punctuation removed, the articles *a / an / the* removed, whitespace collapsed); EM is
equality of normalised strings, F1 the bag-of-tokens overlap; each question takes the maximum over its gold
answers. Following the v2.0 script, gold answers that normalise to the empty string are dropped and a question
without any gold answer is unanswerable: its only gold answer is ``""``, so the empty prediction scores 1 and
anything else 0 (and an empty prediction on an answerable question scores 0). Scores are in [0, 1] here, not the
scripts' 0-100.

Example
-------
>>> round(f1_score("the Eiffel tower", "Eiffel Tower in Paris"), 3)
0.667
>>> squad_scores({"q1": "Paris", "q2": ""}, {"q1": ["paris"], "q2": []})["exact_match"]
1.0
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, collapse whitespace (the official order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token-level F1 of the normalised strings; when either is empty, 1.0 only if both are."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def gold_texts(answers: Sequence[str]) -> list[str]:
    """The gold answers that count (non-empty after normalisation), or ``[""]`` for an unanswerable question."""
    kept = [a for a in answers if normalize_answer(a)]
    return kept or [""]


def question_scores(prediction: str, answers: Sequence[str]) -> tuple[float, float]:
    """``(exact_match, f1)`` of one prediction: the maximum over the gold answers."""
    golds = gold_texts(answers)
    return (max(exact_match_score(prediction, g) for g in golds), max(f1_score(prediction, g) for g in golds))


def squad_scores(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Mean EM and F1 over every question in ``references`` (a missing prediction counts as ``""``).

    Parameters
    ----------
    predictions
        Question id to predicted answer text (``""`` for "no answer").
    references
        Question id to gold answer texts (empty for an unanswerable question).

    Returns
    -------
    dict
        ``exact_match``, ``f1``, ``total``; with unanswerable questions present also ``HasAns_exact``,
        ``HasAns_f1``, ``HasAns_total``, ``NoAns_exact``, ``NoAns_f1``, ``NoAns_total`` (the v2.0 script's keys).
    """
    if not references:
        raise ValueError("no reference questions to score")
    per: dict[str, tuple[float, float]] = {
        qid: question_scores(predictions.get(qid, ""), golds) for qid, golds in references.items()
    }
    out: dict[str, float] = _mean(per.values())
    out["total"] = len(per)
    has = [qid for qid, golds in references.items() if gold_texts(golds) != [""]]
    if len(has) < len(per):
        no = [qid for qid in per if qid not in set(has)]
        for prefix, ids in (("HasAns", has), ("NoAns", no)):
            if ids:
                part = _mean(per[q] for q in ids)
                out[f"{prefix}_exact"], out[f"{prefix}_f1"] = part["exact_match"], part["f1"]
            out[f"{prefix}_total"] = len(ids)
    return out


def _mean(pairs) -> dict[str, float]:
    pairs = list(pairs)
    return {"exact_match": sum(p[0] for p in pairs) / len(pairs), "f1": sum(p[1] for p in pairs) / len(pairs)}


def best_null_threshold(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], null_diffs: Mapping[str, float]
) -> dict[str, float]:
    """The v2.0 script's ``best_f1`` / ``best_f1_thresh``: the best score reachable by predicting "no answer"
    whenever ``null_diffs[qid]`` (null score minus best span score) exceeds a threshold, chosen on these very
    questions (an oracle: report it, do not select models on it).
    """
    if not references:
        raise ValueError("no reference questions to score")
    order = sorted(references, key=lambda q: null_diffs.get(q, 0.0))
    diffs = [null_diffs.get(q, 0.0) for q in order]
    out: dict[str, float] = {}
    for key, index in (("exact", 0), ("f1", 1)):
        # Start from "no answer" everywhere (any threshold below the smallest diff), then switch questions to
        # their span in order of increasing diff; a threshold is only realisable at the end of a run of ties.
        empty = [question_scores("", references[q])[index] for q in order]
        span = [question_scores(predictions.get(q, ""), references[q])[index] for q in order]
        score = best = sum(empty)
        thresh = diffs[0] - 1.0
        for i in range(len(order)):
            score += span[i] - empty[i]
            if (i + 1 == len(order) or diffs[i + 1] > diffs[i]) and score > best:
                best, thresh = score, diffs[i]
        out[f"best_{key}"] = best / len(order)
        out[f"best_{key}_thresh"] = float(thresh)
    return out
