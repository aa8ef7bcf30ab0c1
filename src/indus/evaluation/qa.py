"""Extractive QA: fine-tune a span-prediction head with sliding windows over long contexts; SQuAD EM and F1.

The recipe of BERT on SQuAD (Devlin et al. 2019, arXiv 1810.04805; v2.0 no-answer handling as in its v2 recipe):
each (question, context) pair is tokenised by a fast tokenizer into windows of at most ``max_length`` tokens that
overlap by ``doc_stride`` tokens (``return_overflowing_tokens``; the question is cut to ``max_question_length``
tokens). A linear head predicts start and end logits over the tokens; the loss is the mean of the start and end
cross-entropies. A window that holds the whole gold answer is labelled with the answer's first and last token; a
window without it is labelled at the CLS token ("not here").

**Training windows.** Long contexts (COVID-QA's are whole papers, thousands of tokens) give dozens of windows per
question, nearly all without the answer. Every answer window is kept, plus ``negative_windows`` answer-free
windows sampled per question (``None``: all). An unanswerable question keeps at least one window so the model sees
the null answer. An answerable question whose answer lies in no single window (longer than the overlap) or could
not be located in its context is not trained on; the counts are in the result.

**Prediction.** Every window of an evaluation question is scored. Within each window the ``n_best`` start and
end logits give candidate spans inside the context, with ``end >= start`` and at most ``max_answer_length``
tokens; the window's best span has score start + end logit. Across windows (``window_scoring``):

- ``null_relative`` (default): the span whose score beats its own window's null score (CLS start + end logit)
  by the most wins, as in the BERT baseline for Natural Questions (Alberti et al. 2019, arXiv 1901.08634). Raw
  span logits are not comparable across windows: training sees only a few answer-free windows per question, so
  an answer-free window can hold a confident span, but it also puts a high score on CLS ("not here").
- ``span``: the highest raw span score over all windows wins (the SQuAD v1 recipe, fine for one window).

**Window prior.** A reader fine-tuned on a thousand questions still ranks a paper's dozens of windows poorly (on
COVID-QA it took its span from the answer's window for 13% of the test questions), while the window that shares
the question's rarest words usually holds the answer. With ``window_prior="bm25"`` each window's rank above gets
``prior_weight`` x its BM25 score against the question, z-scored over the question's windows (a one-window context
has no prior, so short-context sets such as SQuAD are unaffected); the weight is chosen on dev for each fine-tuned
model (``auto``; 0, the reader alone, is on the grid). The same prior picks the hard answer-free training windows
(``negative_sampling="hard"``) and, with ``read_windows``, the windows worth reading at all.

The span is mapped back to context characters through the offset mapping. With unanswerable questions in the
data (SQuAD v2 style) the model answers "" when null minus span score exceeds ``null_threshold``; the null score
is the chosen window's own (``null_relative``) or the smallest over the windows (``span``, the v2 recipe).
Metrics follow the official scripts (:mod:`indus.evaluation.qa_metrics`).

Example
-------
>>> from indus.evaluation.qa import QAEvaluator
>>> result = QAEvaluator(epochs=1, max_train_questions=200).evaluate("minilm", "covid-qa")  # doctest: +SKIP
>>> sorted(k for k in result if k in {"exact_match", "f1"})  # doctest: +SKIP
['exact_match', 'f1']
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indus.atomic import atomic_write_json
from indus.data.squad import QAExample, SquadSet, load_squad_split
from indus.errors import IndusError
from indus.evaluation.finetune import RUN_FIELDS, Context, FinetuneEvaluator, Part, autocast, mean_std, single_label
from indus.evaluation.qa_metrics import best_null_threshold, question_scores, squad_scores


@dataclass
class Windows:
    """Tokenised windows of a list of questions.

    Attributes
    ----------
    input_ids, token_type_ids
        One int array per window (``token_type_ids`` empty when the tokenizer has none).
    offsets
        One ``(L, 2)`` int array per window: character span of each token in the context, ``-1`` outside it.
    example
        Index of each window's question.
    start, end
        Token labels of the gold answer in the window; ``cls`` (usually 0) when the window does not hold it.
    cls
        Position of the CLS token in each window.
    prior
        A score per window of how likely it holds its question's answer, relative to the question's other
        windows (:func:`bm25_window_prior`); ``None`` without a window prior.
    """

    input_ids: list[np.ndarray] = field(default_factory=list)
    token_type_ids: list[np.ndarray] = field(default_factory=list)
    offsets: list[np.ndarray] = field(default_factory=list)
    example: list[int] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    end: list[int] = field(default_factory=list)
    cls: list[int] = field(default_factory=list)
    prior: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

    def by_example(self) -> dict[int, list[int]]:
        """Each question's window indices, in window order."""
        out: dict[int, list[int]] = {}
        for i, ex_idx in enumerate(self.example):
            out.setdefault(ex_idx, []).append(i)
        return out

    def holds_answer(self, i: int) -> bool:
        """Whether window ``i`` is labelled with a span (not at CLS)."""
        return self.start[i] != self.cls[i]


def _strip_span(context: str, start: int, end: int) -> tuple[int, int]:
    """Shrink ``[start, end)`` past surrounding whitespace, so the label lands on the answer's own tokens."""
    while start < end and context[start].isspace():
        start += 1
    while end > start and context[end - 1].isspace():
        end -= 1
    return start, end


def _truncate_question(tokenizer: Any, question: str, max_tokens: int) -> str:
    enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= max_tokens:
        return question
    return question[: enc["offset_mapping"][max_tokens - 1][1]]


def tokenize_windows(
    tokenizer: Any,
    examples: list[QAExample],
    *,
    max_length: int,
    doc_stride: int,
    max_question_length: int = 64,
    chunk: int = 32,
) -> Windows:
    """Cut every (question, context) pair into overlapping windows and label the first located gold answer.

    Parameters
    ----------
    tokenizer
        A fast tokenizer (offset mappings are required).
    examples
        The questions.
    max_length
        Tokens per window, special tokens and question included.
    doc_stride
        Context tokens shared by consecutive windows.
    max_question_length
        Questions are cut to this many tokens.
    chunk
        Questions tokenised per call.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise IndusError(f"{type(tokenizer).__name__}: extractive QA needs a fast tokenizer (offset mappings)")
    out = Windows()
    has_types = "token_type_ids" in tokenizer.model_input_names
    for lo in range(0, len(examples), chunk):
        batch = examples[lo : lo + chunk]
        enc = tokenizer(
            [_truncate_question(tokenizer, ex.question, max_question_length) for ex in batch],
            [ex.context for ex in batch],
            truncation="only_second",
            max_length=max_length,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=False,
        )
        for w, sample in enumerate(enc["overflow_to_sample_mapping"]):
            ex = batch[sample]
            ids = np.asarray(enc["input_ids"][w], dtype=np.int32)
            seq = enc.sequence_ids(w)
            offsets = np.asarray(enc["offset_mapping"][w], dtype=np.int32).reshape(-1, 2)
            in_ctx = np.array([s == 1 for s in seq])
            offsets[~in_ctx] = -1
            cls_hits = np.flatnonzero(ids == tokenizer.cls_token_id) if tokenizer.cls_token_id is not None else []
            cls = int(cls_hits[0]) if len(cls_hits) else 0
            start = end = cls
            located = ex.located_answers
            ctx_idx = np.flatnonzero(in_ctx)
            if located and len(ctx_idx):
                s, e = _strip_span(ex.context, located[0].start, located[0].end)
                first, last = ctx_idx[0], ctx_idx[-1]
                if offsets[first, 0] <= s and offsets[last, 1] >= e:
                    # Last context token starting at or before s; first one ending at or after e.
                    start = int(ctx_idx[offsets[ctx_idx, 0] <= s][-1])
                    end = int(ctx_idx[offsets[ctx_idx, 1] >= e][0])
            out.input_ids.append(ids)
            out.token_type_ids.append(
                np.asarray(enc["token_type_ids"][w], dtype=np.int8) if has_types else np.zeros(0, dtype=np.int8)
            )
            out.offsets.append(offsets)
            out.example.append(lo + sample)
            out.start.append(start)
            out.end.append(end)
            out.cls.append(cls)
    return out


WINDOW_PRIORS = ("none", "bm25")
NEGATIVE_SAMPLINGS = ("random", "hard")
#: weights of the window prior tried on dev (``prior_weight: auto``); 0 is the reader alone
PRIOR_WEIGHT_GRID = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
#: ``lr: auto`` candidates for BERT-size checkpoints: a span head trained on a thousand questions may want more than
#: NER's grid (minilm on COVID-QA scored 1e-4 and 3e-4 close on dev, benchmarks/results/qa_reader.md); 5e-5 for
#: 768-wide encoders
QA_LR_GRID = (5e-5, 1e-4, 3e-4)


def window_texts(windows: Windows, examples: list[QAExample]) -> list[str]:
    """The context text each window covers (its first to its last context token)."""
    out = []
    for ids_offsets, ex_idx in zip(windows.offsets, windows.example, strict=True):
        inside = ids_offsets[ids_offsets[:, 0] >= 0]
        out.append(examples[ex_idx].context[inside[0, 0] : inside[-1, 1]] if len(inside) else "")
    return out


def bm25_window_prior(windows: Windows, examples: list[QAExample]) -> np.ndarray:
    """How well each window matches its question's words, relative to the question's other windows: BM25
    (:class:`~indus.evaluation.ir.Bm25Retriever`, its windows as the collection) z-scored within the question;
    0 for a question with one window (or windows that all score alike).

    Long contexts give dozens of windows; a reader trained on a few answer-free windows per question ranks them
    poorly, while a window that shares the question's rare words usually holds the answer (see
    ``benchmarks/qa_reader.py``)."""
    from indus.evaluation.ir import Bm25Retriever

    texts = window_texts(windows, examples)
    prior = np.zeros(len(windows), dtype=np.float64)
    by_example = windows.by_example()
    for ex_idx, idx in by_example.items():
        if len(idx) < 2:
            continue
        ids = [str(i) for i in idx]
        bm25 = Bm25Retriever()
        bm25.index(ids, [texts[i] for i in idx])
        scores = np.asarray(bm25.score_docs(examples[ex_idx].question, ids), dtype=np.float64)
        spread = scores.std()
        if spread > 0:
            prior[idx] = (scores - scores.mean()) / spread
    return prior


def select_training_windows(
    windows: Windows,
    examples: list[QAExample],
    negative_windows: int | None,
    rng: random.Random,
    prior: np.ndarray | None = None,
) -> tuple[list[int], dict[str, int]]:
    """The windows to train on (see the module docstring) and counts of what was kept and skipped. With a window
    ``prior``, the answer-free windows are the question's highest-prior ones (hard negatives: those a reader
    must tell from the answer window at prediction time) instead of a random sample."""
    by_example = windows.by_example()
    chosen: list[int] = []
    stats = {
        "train_windows_available": len(windows),
        "train_windows_positive": 0,
        "train_windows_negative": 0,
        "train_questions_used": 0,
        "train_questions_unlocated": 0,
        "train_questions_no_answer_window": 0,
    }
    for ex_idx, idx in sorted(by_example.items()):
        ex = examples[ex_idx]
        pos = [i for i in idx if windows.holds_answer(i)]
        neg = [i for i in idx if not windows.holds_answer(i)]
        if not ex.is_impossible:
            if not ex.located_answers:
                stats["train_questions_unlocated"] += 1
                continue
            if not pos:
                stats["train_questions_no_answer_window"] += 1
                continue
        want = len(neg) if negative_windows is None else negative_windows
        if ex.is_impossible:
            want = max(want, 1)
        if prior is None:
            sampled = rng.sample(neg, min(want, len(neg)))
        else:
            sampled = sorted(neg, key=lambda i: -prior[i])[:want]
        chosen.extend(pos + sampled)
        stats["train_windows_positive"] += len(pos)
        stats["train_windows_negative"] += len(sampled)
        stats["train_questions_used"] += 1
    return chosen, stats


def _collate(windows: Windows, pad_id: int, device: Any, labels: bool):
    import torch

    def collate(indices: list[int]) -> dict[str, Any]:
        longest = max(len(windows.input_ids[i]) for i in indices)
        ids = torch.full((len(indices), longest), pad_id, dtype=torch.long)  # (B, L)
        mask = torch.zeros((len(indices), longest), dtype=torch.long)  # (B, L)
        types = (
            torch.zeros((len(indices), longest), dtype=torch.long) if len(windows.token_type_ids[indices[0]]) else None
        )
        for row, i in enumerate(indices):
            n = len(windows.input_ids[i])
            ids[row, :n] = torch.from_numpy(windows.input_ids[i]).long()
            mask[row, :n] = 1
            if types is not None:
                types[row, :n] = torch.from_numpy(windows.token_type_ids[i]).long()
        batch = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            batch["token_type_ids"] = types
        if labels:
            batch["start_positions"] = torch.tensor([windows.start[i] for i in indices])  # (B,)
            batch["end_positions"] = torch.tensor([windows.end[i] for i in indices])  # (B,)
        return {k: v.to(device) for k, v in batch.items()}

    return collate


def predict_logits(
    model: Any,
    windows: Windows,
    *,
    batch_size: int,
    pad_id: int,
    device: Any,
    progress: bool = True,
    bf16: bool = False,
    only: list[int] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Start and end logits of every window (arrays of the window's length), batched by length; with ``only``,
    of those windows alone (the others get empty arrays, which :func:`decode` skips)."""
    import torch
    from tqdm.auto import tqdm

    collate = _collate(windows, pad_id, device, labels=False)
    order = sorted(range(len(windows)) if only is None else only, key=lambda i: len(windows.input_ids[i]))
    starts: list[np.ndarray] = [np.empty(0)] * len(windows)
    ends: list[np.ndarray] = [np.empty(0)] * len(windows)
    model.eval()
    with torch.inference_mode(), autocast(device, bf16):
        for lo in tqdm(range(0, len(order), batch_size), desc="qa predict", disable=not progress, leave=False):
            idx = order[lo : lo + batch_size]
            out = model(**collate(idx))
            s = out["start_logits"].float().cpu().numpy()  # (B, L)
            e = out["end_logits"].float().cpu().numpy()  # (B, L)
            for row, i in enumerate(idx):
                n = len(windows.input_ids[i])
                starts[i], ends[i] = s[row, :n], e[row, :n]
    return starts, ends


WINDOW_SCORINGS = ("null_relative", "span")


@dataclass
class Prediction:
    """The decoded answer of one question.

    Attributes
    ----------
    text
        The answer span's text ("" when no window had a valid span).
    span_score
        Start + end logit of the chosen span.
    null_score
        The null (CLS start + end) score the span is compared with: with ``null_relative`` scoring the chosen
        window's own, with ``span`` scoring the smallest over the question's windows.
    start_char, end_char
        The span in context characters.
    window
        Index of the window the span comes from (``-1``: none).
    """

    text: str
    span_score: float
    null_score: float
    start_char: int
    end_char: int
    window: int = -1


def window_spans(
    starts: np.ndarray, ends: np.ndarray, offsets: np.ndarray, *, n_best: int, max_answer_length: int
) -> tuple[float, int, int]:
    """The best span of one window: ``(start + end logit, start token, end token)``, ``(-inf, -1, -1)`` when the
    window has no context token; spans lie inside the context, ``end >= start``, at most ``max_answer_length``
    tokens, among the ``n_best`` highest start and end logits."""
    ctx = np.flatnonzero(offsets[:, 0] >= 0)
    if not len(ctx):
        return -np.inf, -1, -1
    k = min(n_best, len(ctx))
    top_s = ctx[np.argsort(starts[ctx])[::-1][:k]]  # (k,)
    top_e = ctx[np.argsort(ends[ctx])[::-1][:k]]  # (k,)
    scores = starts[top_s][:, None] + ends[top_e][None, :]  # (k, k)
    length = top_e[None, :] - top_s[:, None] + 1  # (k, k)
    scores = np.where((length >= 1) & (length <= max_answer_length), scores, -np.inf)
    flat = int(np.argmax(scores))
    i, j = divmod(flat, k)
    return float(scores.flat[flat]), int(top_s[i]), int(top_e[j])


def decode(
    examples: list[QAExample],
    windows: Windows,
    starts: list[np.ndarray],
    ends: list[np.ndarray],
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
    scoring: str = "null_relative",
    prior_weight: float = 0.0,
) -> list[Prediction]:
    """Best span of each question over all its windows, and its null score (see the module docstring).

    ``scoring`` ranks the windows' best spans: ``null_relative`` by span score minus the window's own null
    (CLS) score, ``span`` by the raw span score (start + end logit); ``prior_weight`` times the window's prior
    (``windows.prior``) is added to that rank. Windows with empty logits (not read) are skipped.
    """
    if scoring not in WINDOW_SCORINGS:
        raise IndusError(f"qa: window scoring must be one of {', '.join(WINDOW_SCORINGS)}, got {scoring!r}")
    relative = scoring == "null_relative"
    best: list[Prediction] = [Prediction("", -np.inf, np.inf, -1, -1) for _ in examples]
    rank = [-np.inf] * len(examples)
    min_null = [np.inf] * len(examples)
    for w, ex_idx in enumerate(windows.example):
        s, e, off = starts[w], ends[w], windows.offsets[w]
        if not len(s):
            continue
        cls = windows.cls[w]
        null = float(s[cls] + e[cls])
        min_null[ex_idx] = min(min_null[ex_idx], null)
        score, a, b = window_spans(s, e, off, n_best=n_best, max_answer_length=max_answer_length)
        key = score - null if relative else score
        if prior_weight and windows.prior is not None:
            key += prior_weight * windows.prior[w]
        if key > rank[ex_idx]:
            rank[ex_idx] = key
            start_char, end_char = int(off[a, 0]), int(off[b, 1])
            best[ex_idx] = Prediction(
                examples[ex_idx].context[start_char:end_char], score, null, start_char, end_char, w
            )
    for ex_idx, pred in enumerate(best):
        if not relative or pred.window < 0:
            pred.null_score = min_null[ex_idx]
    return best


def final_answers(
    examples: list[QAExample], preds: list[Prediction], *, allow_null: bool, null_threshold: float
) -> dict[str, str]:
    """Question id to answer text: the best span, or "" when null answers are allowed and the null score wins."""
    out: dict[str, str] = {}
    for ex, p in zip(examples, preds, strict=True):
        no_span = not np.isfinite(p.span_score)
        if allow_null and (no_span or p.null_score - p.span_score > null_threshold):
            out[ex.id] = ""
        else:
            out[ex.id] = "" if no_span else p.text
    return out


def answer_window_rate(windows: Windows, preds: list[Prediction]) -> float | None:
    """Share of the questions with an answer window whose predicted span comes from a window holding the (first
    located) gold answer; ``None`` when no question has an answer window."""
    holds = {windows.example[i] for i in range(len(windows)) if windows.holds_answer(i)}
    if not holds:
        return None
    return sum(windows.holds_answer(preds[q].window) for q in holds if preds[q].window >= 0) / len(holds)


#: buckets of :func:`f1_by_windows`: (label, fewest, most windows per question)
WINDOW_BUCKETS = (("1", 1, 1), ("2-8", 2, 8), ("9-32", 9, 32), ("33+", 33, 10**9))


def f1_by_windows(part: Any, answers: dict[str, str], references: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """F1 by context length: the questions grouped by how many windows their context needs (:data:`WINDOW_BUCKETS`),
    each bucket's question count and mean F1 (buckets without questions left out)."""
    counts = np.bincount(np.asarray(part.features.example, dtype=np.int64), minlength=len(part.items))
    out: dict[str, dict[str, Any]] = {}
    for label, lo, hi in WINDOW_BUCKETS:
        f1s = [
            question_scores(answers[ex.id], references[ex.id])[1]
            for ex, n in zip(part.items, counts, strict=True)
            if lo <= n <= hi
        ]
        if f1s:
            out[label] = {"questions": len(f1s), "f1": float(np.mean(f1s))}
    return out


@dataclass
class _SquadData:
    """A QA dataset read split by split (each a :class:`~indus.data.squad.SquadSet`, kept for its repair counts)."""

    path: Path
    sets: dict[str, SquadSet] = field(default_factory=dict)

    def split(self, name: str) -> list[QAExample]:
        self.sets[name] = load_squad_split(self.path, name)
        return list(self.sets[name].examples)


@dataclass(kw_only=True)
class QAEvaluator(FinetuneEvaluator):
    """Extractive QA fine-tuning and SQuAD EM / F1 (see the module docstring).

    Parameters
    ----------
    seeds
        Fine-tuning runs (seeds ``seed .. seed + seeds - 1``); metrics are the mean, ``*_std`` the sample std.
    seed
        First seed.
    epochs, batch_size, lr, weight_decay, warmup_ratio, max_steps
        Optimisation (:class:`~indus.evaluation.finetune.FinetuneSettings`).
    max_length
        Tokens per window.
    doc_stride
        Tokens of overlap between consecutive windows of one context.
    max_question_length
        Questions are cut to this many tokens.
    max_answer_length
        Longest predicted span, in tokens; ``auto``: the 95th percentile of the training answers' lengths in
        the model's tokens (at least 16).
    n_best
        Start and end candidates per window.
    negative_windows
        Answer-free windows taken per training question (``None``: all).
    negative_sampling
        Which answer-free windows: ``hard`` (the question's highest window-prior ones; needs a ``window_prior``)
        or ``random``.
    window_scoring
        How the windows' best spans are ranked: ``null_relative`` (span score minus the window's own null score)
        or ``span`` (raw start + end logit); see the module docstring.
    window_prior
        ``bm25``: add ``prior_weight`` x the window's BM25 match with its question (z-scored within the
        question, :func:`bm25_window_prior`) to each window's rank; ``none``: the reader alone.
    prior_weight
        The prior's weight; ``auto``: the best of :data:`PRIOR_WEIGHT_GRID` by dev F1 (chosen again for every
        fine-tuned model; 1.0 when there is no dev question).
    read_windows
        At prediction, read only each question's this many highest-prior windows (``None``: all); a speed
        setting for long contexts.
    null_threshold
        Answer "" when null score minus best span score exceeds this (only when the data has unanswerable
        questions, or ``allow_null`` is true).
    allow_null
        Whether "" may be predicted; ``None``: when the training or evaluation split has unanswerable questions.
    max_train_questions, max_eval_questions
        Use a fixed random subset (drawn with seed 0, the same for every model) of this many questions.
    split, train_split
        Evaluation and training splits (see :func:`indus.data.squad.squad_splits`).
    eval_batch_size
        Windows per forward pass when predicting.
    bf16
        Run forward passes (training and prediction) under bfloat16 autocast; about 1.9x faster on CPUs with
        AVX-512 BF16 / AMX, weights and optimiser state stay fp32.
    predictions_path
        Write ``{id: answer}`` (SQuAD's prediction format) here; with several seeds one file per seed
        (``NAME.seedS.json``).
    device
        ``cpu``, ``cuda``, ...; ``None``: CUDA when available.
    progress
        Show progress bars.
    """

    task = "qa"
    data_kind = "qa"
    head = "AutoModelForQuestionAnswering"
    primary_metric = "f1"
    limits = ("max_train_questions", "max_eval_questions")
    base_lr_grid = QA_LR_GRID

    seeds: int = 1
    epochs: float = 3.0
    max_length: int = 256
    doc_stride: int = 96
    max_question_length: int = 64
    max_answer_length: int | str = "auto"
    n_best: int = 20
    negative_windows: int | None = 1
    negative_sampling: str = "hard"
    window_scoring: str = "null_relative"
    window_prior: str = "bm25"
    prior_weight: float | str = "auto"
    read_windows: int | None = None
    null_threshold: float = 0.0
    allow_null: bool | None = None
    max_train_questions: int | None = None
    max_eval_questions: int | None = None
    predictions_path: str | Path | None = None

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.max_answer_length, str) and self.max_answer_length != "auto":
            try:
                self.max_answer_length = int(self.max_answer_length)
            except ValueError:
                problems.append(
                    f"max_answer_length must be a number of tokens or 'auto', got {self.max_answer_length!r}"
                )
        if isinstance(self.prior_weight, str) and self.prior_weight != "auto":
            try:
                self.prior_weight = float(self.prior_weight)
            except ValueError:
                problems.append(f"prior_weight must be a number or 'auto', got {self.prior_weight!r}")
        answer_limit = self.max_answer_length if isinstance(self.max_answer_length, int) else 1
        if self.max_question_length < 1 or answer_limit < 1 or self.n_best < 1:
            problems.append("max_question_length, max_answer_length and n_best must be >= 1")
        if self.window_prior not in WINDOW_PRIORS:
            problems.append(f"window_prior must be one of {', '.join(WINDOW_PRIORS)}, got {self.window_prior!r}")
        if self.negative_sampling not in NEGATIVE_SAMPLINGS:
            problems.append(
                f"negative_sampling must be one of {', '.join(NEGATIVE_SAMPLINGS)}, got {self.negative_sampling!r}"
            )
        elif self.negative_sampling == "hard" and self.window_prior == "none":
            problems.append("negative_sampling 'hard' ranks windows by the window prior: set window_prior")
        if self.read_windows is not None and self.read_windows < 1:
            problems.append(f"read_windows must be >= 1 or None, got {self.read_windows}")
        if self.doc_stride < 0 or self.doc_stride + self.max_question_length + 3 >= self.max_length:
            problems.append(
                f"need 0 <= doc_stride and doc_stride + max_question_length + 3 < max_length "
                f"(got {self.doc_stride} + {self.max_question_length} + 3 vs {self.max_length})"
            )
        if self.negative_windows is not None and self.negative_windows < 0:
            problems.append(f"negative_windows must be >= 0 or None, got {self.negative_windows}")
        if self.window_scoring not in WINDOW_SCORINGS:
            problems.append(f"window_scoring must be one of {', '.join(WINDOW_SCORINGS)}, got {self.window_scoring!r}")
        self.check(problems)

    @property
    def wants_dev(self) -> bool:
        """The dev split also chooses the window prior's weight."""
        return super().wants_dev or (self.window_prior != "none" and self.prior_weight == "auto")

    def load_data(self, path: Path) -> _SquadData:
        return _SquadData(path)

    def check_items(self, path: Path, train: list[Any], evals: list[Any]) -> None:
        if not train or not evals:
            raise IndusError(f"{path}: empty {self.train_split if not train else self.split} split")

    def _allow_null(self, ctx: Context) -> bool:
        sets = ctx.data.sets
        if self.allow_null is not None:
            return self.allow_null
        return sets[self.train_split].has_unanswerable or sets[self.split].has_unanswerable

    def encode(self, tokenizer: Any, items: list[Any], data: Any) -> Part:
        windows = tokenize_windows(
            tokenizer,
            items,
            max_length=self.max_length,
            doc_stride=self.doc_stride,
            max_question_length=self.max_question_length,
        )
        if self.window_prior == "bm25":
            windows.prior = bm25_window_prior(windows, items)
        return Part(items, windows)

    def collate(self, ctx: Context, labels: bool):
        return _collate(ctx.train.features, ctx.pad_id, ctx.device, labels=labels)

    def training_features(self, ctx: Context, seed: int) -> tuple[list[int], None]:
        windows = ctx.train.features
        hard = self.negative_sampling == "hard"
        chosen, ctx.extra["window_stats"] = select_training_windows(
            windows, ctx.train.items, self.negative_windows, random.Random(seed), windows.prior if hard else None
        )
        if not chosen:
            raise IndusError(
                f"{ctx.path}: no training windows (no question of the {self.train_split} split has "
                "its answer inside one window)"
            )
        return chosen, None

    def answer_limit(self, ctx: Context) -> int:
        """``max_answer_length`` in tokens: as set, or (``auto``) the 95th percentile of the training answers'
        token lengths, at least 16."""
        if self.max_answer_length != "auto":
            return int(self.max_answer_length)
        if "max_answer_length" not in ctx.extra:
            texts = [a.text for ex in ctx.train.items for a in ex.located_answers]
            lengths = [len(ids) for ids in ctx.tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []
            ctx.extra["max_answer_length"] = max(16, int(np.ceil(np.percentile(lengths, 95)))) if lengths else 30
        return ctx.extra["max_answer_length"]

    def _logits(self, net: Any, ctx: Context, part: Part) -> tuple[list[np.ndarray], list[np.ndarray]]:
        windows = part.features
        only = None
        if self.read_windows is not None and windows.prior is not None:
            only = [
                i
                for idx in windows.by_example().values()
                for i in sorted(idx, key=lambda i: -windows.prior[i])[: self.read_windows]
            ]
        return predict_logits(
            net,
            windows,
            batch_size=self.eval_batch_size,
            pad_id=ctx.pad_id,
            device=ctx.device,
            progress=self.progress,
            bf16=self.bf16,
            only=only,
        )

    def _decode(self, ctx: Context, part: Part, logits: tuple[list[np.ndarray], list[np.ndarray]], weight: float):
        return decode(
            part.items,
            part.features,
            *logits,
            n_best=self.n_best,
            max_answer_length=self.answer_limit(ctx),
            scoring=self.window_scoring,
            prior_weight=weight,
        )

    def _f1(self, ctx: Context, part: Part, preds: list[Prediction]) -> float:
        references = {ex.id: [a.text for a in ex.answers] for ex in part.items}
        return squad_scores(self._answers(ctx, part, preds), references)["f1"]

    def choose_prior_weight(self, net: Any, ctx: Context) -> tuple[float, list[Prediction] | None]:
        """The window prior's weight for ``net``: fixed, or (``auto``) the best dev F1 over
        :data:`PRIOR_WEIGHT_GRID` (the smallest weight on ties), recorded in ``ctx.extra``; with the dev
        predictions at that weight when dev was predicted."""
        if self.window_prior == "none":
            return 0.0, None
        if self.prior_weight != "auto":
            return float(self.prior_weight), None
        if ctx.dev is None:
            ctx.extra["prior_grid"] = None
            return 1.0, None
        logits = self._logits(net, ctx, ctx.dev)
        grid, best, best_preds = {}, None, None
        for weight in PRIOR_WEIGHT_GRID:
            preds = self._decode(ctx, ctx.dev, logits, weight)
            grid[f"{weight:g}"] = self._f1(ctx, ctx.dev, preds)
            if best is None or grid[f"{weight:g}"] > grid[f"{best:g}"]:
                best, best_preds = weight, preds
        ctx.extra["prior_grid"] = grid
        return best, best_preds

    def predict(self, net: Any, ctx: Context, part: Part) -> list[Prediction]:
        """Decoded answers of ``part``; the window prior's weight is chosen on dev first (``auto``)."""
        weight, dev_preds = self.choose_prior_weight(net, ctx)
        if part is ctx.dev and dev_preds is not None:
            return dev_preds
        ctx.extra["prior_weight"] = weight
        logits = self._logits(net, ctx, part)
        preds = self._decode(ctx, part, logits, weight)
        if part is ctx.eval and self.window_prior != "none":  # what the reader alone answers, for comparison
            alone = self._decode(ctx, part, logits, 0.0) if weight else preds
            ctx.extra["reader_alone"] = {
                "f1": self._f1(ctx, part, alone),
                "answer_window_rate": answer_window_rate(part.features, alone),
            }
        else:
            ctx.extra.pop("reader_alone", None)
        return preds

    def _answers(self, ctx: Context, part: Part, preds: list[Prediction]) -> dict[str, str]:
        return final_answers(part.items, preds, allow_null=self._allow_null(ctx), null_threshold=self.null_threshold)

    def score(self, ctx: Context, part: Part, preds: list[Prediction]) -> dict[str, Any]:
        references = {ex.id: [a.text for a in ex.answers] for ex in part.items}
        scores = squad_scores(self._answers(ctx, part, preds), references)
        if self._allow_null(ctx):
            spans = {ex.id: p.text for ex, p in zip(part.items, preds, strict=True)}
            diffs = {
                ex.id: float(np.clip(p.null_score - p.span_score, -1e9, 1e9))
                for ex, p in zip(part.items, preds, strict=True)
            }
            scores.update(best_null_threshold(spans, references, diffs))
        rate = answer_window_rate(part.features, preds)
        if rate is not None:
            scores["answer_window_rate"] = rate
        if part is ctx.eval:
            scores["f1_by_windows"] = f1_by_windows(part, self._answers(ctx, part, preds), references)
            if self.window_prior != "none":
                scores["prior_weight"] = ctx.extra.get("prior_weight")
                scores["prior_grid_dev"] = ctx.extra.get("prior_grid")
                for key, value in (ctx.extra.get("reader_alone") or {}).items():
                    scores[f"{key}_reader_alone"] = value
        return scores

    def collapsed(self, ctx: Context, part: Part, preds: list[Prediction]) -> bool:
        answers = list(self._answers(ctx, part, preds).values())
        # gold "answers" stand for themselves: distinct questions have distinct ids
        return len(answers) > 1 and single_label(answers, [ex.id for ex in part.items])

    def aggregate(self, runs: list[dict[str, Any]], ctx: Context) -> dict[str, Any]:
        """Every metric's mean over the runs (the sample std of ``exact_match`` and ``f1``); the ``*_total``
        counts of the first run."""
        result: dict[str, Any] = {}
        per_run = {"total", "prior_weight", "prior_grid_dev", "f1_by_windows", *RUN_FIELDS}
        metric_keys = [k for k in runs[0] if k not in per_run and not k.endswith("_total") and runs[0][k] is not None]
        if "f1_by_windows" in runs[0]:
            result["f1_by_windows"] = {
                bucket: {
                    "questions": cell["questions"],
                    "f1": mean_std([r["f1_by_windows"][bucket]["f1"] for r in runs])[0],
                }
                for bucket, cell in runs[0]["f1_by_windows"].items()
            }
        for key in metric_keys:
            mean, std = mean_std([r[key] for r in runs])
            result[key] = mean
            if key in {"exact_match", "f1"}:
                result[f"{key}_std"] = std
        for key in [k for k in runs[0] if k.endswith("_total")]:
            result[key] = runs[0][key]
        return result

    def describe(self, ctx: Context, runs: list[dict[str, Any]]) -> dict[str, Any]:
        sets = ctx.data.sets
        train_set, eval_set = sets[self.train_split], sets[self.split]
        return {
            "no_answer": self._allow_null(ctx),
            "train_questions": len(ctx.train.items),
            "eval_questions": len(ctx.eval.items),
            **ctx.extra["window_stats"],
            "eval_windows": len(ctx.eval.features),
            "answers_repaired": train_set.repairs.repaired + eval_set.repairs.repaired,
            "answers_unlocated": train_set.repairs.unlocated + eval_set.repairs.unlocated,
            "train_s": mean_std([r["train_s"] for r in runs])[0],
            "eval_s": mean_std([r["eval_s"] for r in runs])[0],
        }

    def describe_tail(self, ctx: Context) -> dict[str, Any]:
        return {
            "doc_stride": self.doc_stride,
            "max_answer_length": self.answer_limit(ctx),
            "max_answer_length_setting": self.max_answer_length,
        }

    def write_predictions(self, ctx: Context, preds: list[Prediction], seed: int) -> None:

        if self.predictions_path:
            atomic_write_json(self.seed_path(seed, ".json"), self._answers(ctx, ctx.eval, preds))
