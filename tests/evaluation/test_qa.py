from __future__ import annotations

import json
import random

import numpy as np
import pytest

from indus.data.squad import Answer, QAExample, read_squad
from indus.errors import IndusError
from indus.evaluation import get_evaluator
from indus.evaluation.qa import (
    QAEvaluator,
    answer_window_rate,
    decode,
    final_answers,
    select_training_windows,
    tokenize_windows,
)

FILLER = "The committee met again and discussed the weather, the budget and other matters at length. "


def _long_context(fact: str, position: int, n: int = 12) -> str:
    parts = [FILLER] * n
    parts.insert(position, fact + " ")
    return "".join(parts)


def _examples() -> list[QAExample]:
    ctx1 = _long_context("The capital of Freedonia is Sylvania City and no other.", 7)
    ctx2 = _long_context("Marmots hibernate for seven months.", 2)
    a1 = ctx1.index("Sylvania City")
    a2 = ctx2.index("seven months")
    return [
        QAExample("q1", "What is the capital of Freedonia?", ctx1, (Answer("Sylvania City ", a1, a1),), 0),
        QAExample("q2", "How long do marmots hibernate?", ctx2, (Answer("seven months", a2, a2),), 1),
        QAExample("q3", "Who chairs the committee?", ctx2, (), 1),
    ]


@pytest.fixture(scope="module")
def tokenizer():
    from indus.models import load_tokenizer

    return load_tokenizer("minilm")


def test_windows_overlap_and_labels_map_back_to_answer_text(tokenizer):
    examples = _examples()
    windows = tokenize_windows(tokenizer, examples, max_length=48, doc_stride=16, max_question_length=16)
    per_example = [windows.example.count(i) for i in range(len(examples))]
    assert min(per_example) > 3  # long contexts -> several windows each
    for i in range(len(windows)):
        ex = examples[windows.example[i]]
        off = windows.offsets[i]
        ctx_tokens = np.flatnonzero(off[:, 0] >= 0)
        assert len(ctx_tokens) and windows.cls[i] == 0
        if windows.holds_answer(i):
            s, e = windows.start[i], windows.end[i]
            # the labelled tokens cover exactly the answer text (surrounding whitespace stripped)
            assert ex.context[off[s, 0] : off[e, 1]] == ex.answers[0].text.strip()
    # consecutive windows of one question share doc_stride context tokens
    first_two = [i for i in range(len(windows)) if windows.example[i] == 0][:2]
    a, b = (windows.offsets[i][windows.offsets[i][:, 0] >= 0] for i in first_two)
    assert [tuple(x) for x in a[-16:]] == [tuple(x) for x in b[:16]]
    # answer windows exist for both answerable questions; none for the unanswerable one
    held = {windows.example[i] for i in range(len(windows)) if windows.holds_answer(i)}
    assert held == {0, 1}


def test_training_window_selection_counts(tokenizer):
    examples = _examples()
    windows = tokenize_windows(tokenizer, examples, max_length=48, doc_stride=16, max_question_length=16)
    chosen, stats = select_training_windows(windows, examples, 1, random.Random(0))
    positives = sum(windows.holds_answer(i) for i in range(len(windows)))
    assert stats["train_windows_positive"] == positives
    assert stats["train_windows_negative"] == 3  # one per question, the unanswerable one included
    assert len(chosen) == positives + 3 and stats["train_questions_used"] == 3
    _, none = select_training_windows(windows, examples, 0, random.Random(0))
    assert none["train_windows_negative"] == 1  # the unanswerable question keeps one window
    _, every = select_training_windows(windows, examples, None, random.Random(0))
    assert every["train_windows_positive"] + every["train_windows_negative"] == len(windows)


def _planted_logits(windows, spans):
    """Logits that are low everywhere except a planted (start, end) per window index in ``spans``."""
    starts = [np.full(len(ids), -5.0, dtype=np.float32) for ids in windows.input_ids]
    ends = [np.full(len(ids), -5.0, dtype=np.float32) for ids in windows.input_ids]
    for w, (s, e, score) in spans.items():
        starts[w][s] += score
        ends[w][e] += score
    return starts, ends


def test_decode_picks_best_span_across_windows_and_maps_characters(tokenizer):
    examples = _examples()[:1]
    windows = tokenize_windows(tokenizer, examples, max_length=48, doc_stride=16, max_question_length=16)
    answer_windows = [i for i in range(len(windows)) if windows.holds_answer(i)]
    other = next(i for i in range(len(windows)) if not windows.holds_answer(i))
    ctx_other = np.flatnonzero(windows.offsets[other][:, 0] >= 0)
    w = answer_windows[-1]
    spans = {w: (windows.start[w], windows.end[w], 8.0), other: (ctx_other[0], ctx_other[2], 6.0)}
    starts, ends = _planted_logits(windows, spans)
    pred = decode(examples, windows, starts, ends, n_best=5, max_answer_length=10)[0]
    assert pred.text == "Sylvania City"
    assert examples[0].context[pred.start_char : pred.end_char] == "Sylvania City"
    assert pred.span_score == pytest.approx(16.0 - 10.0)
    # with max_answer_length=1 neither planted span fits; the best one-token span starts at the planted start
    s, e = windows.start[w], windows.end[w]
    assert e > s
    pred = decode(examples, windows, starts, ends, n_best=48, max_answer_length=1)[0]
    assert pred.span_score == pytest.approx(3.0 - 5.0)
    assert (pred.start_char, pred.end_char) == tuple(windows.offsets[w][s])
    # end before start is never a span: with n_best=1 the reversed plant is rejected, a flat -10 span wins
    s2, e2 = _planted_logits(windows, {w: (e, s, 8.0)})
    assert decode(examples, windows, s2, e2, n_best=1, max_answer_length=10)[0].span_score == pytest.approx(-10.0)


def test_no_answer_logic(tokenizer):
    examples = _examples()
    windows = tokenize_windows(tokenizer, examples, max_length=48, doc_stride=16, max_question_length=16)
    spans = {}
    for i in range(len(windows)):
        if windows.holds_answer(i):
            spans[i] = (windows.start[i], windows.end[i], 4.0)  # span score -10 + 8 = -2 ... per window
    starts, ends = _planted_logits(windows, spans)
    # CLS (index 0) of every window of q3 scores high -> null wins there; q1/q2 CLS stays at -10
    for i in range(len(windows)):
        if windows.example[i] == 2:
            starts[i][0] = ends[i][0] = 3.0
    preds = decode(examples, windows, starts, ends, n_best=5, max_answer_length=10)
    assert preds[0].null_score == pytest.approx(-10.0) and preds[2].null_score == pytest.approx(6.0)
    v2 = final_answers(examples, preds, allow_null=True, null_threshold=0.0)
    assert v2["q1"] == "Sylvania City" and v2["q2"] == "seven months" and v2["q3"] == ""
    strict = final_answers(examples, preds, allow_null=True, null_threshold=-100.0)
    assert set(strict.values()) == {""}  # a very low threshold abstains everywhere
    v1 = final_answers(examples, preds, allow_null=False, null_threshold=0.0)
    assert v1["q3"] != ""  # without null answers every question gets a span


def _squad_file(path, examples):
    by_ctx: dict[str, list] = {}
    for ex in examples:
        qa = {
            "id": ex.id,
            "question": ex.question,
            "answers": [{"text": a.text, "answer_start": a.start} for a in ex.answers],
        }
        by_ctx.setdefault(ex.context, []).append(qa)
    data = [{"paragraphs": [{"context": c, "qas": qas}]} for c, qas in by_ctx.items()]
    path.write_text(json.dumps({"version": "v2.0", "data": data}))
    return path


def test_evaluator_end_to_end_micro(tmp_path, micro_model_dir):
    folder = tmp_path / "qa"
    folder.mkdir()
    examples = _examples()
    _squad_file(folder / "train.json", examples)
    _squad_file(folder / "test.json", examples)
    preds = tmp_path / "preds.json"
    evaluator = get_evaluator(
        "qa",
        epochs=1,
        batch_size=4,
        max_length=48,
        doc_stride=16,
        max_question_length=16,
        max_answer_length=8,
        seeds=2,
        progress=False,
        predictions_path=preds,
        # a fixed rate and prior weight train on all 3 questions (no dev carved out); keep: a collapsed seed counts
        lr=1e-3,
        prior_weight=1.0,
        on_collapse="keep",
    )
    result = evaluator.evaluate(str(micro_model_dir), folder)
    assert result["task"] == "qa" and result["primary_metric"] == "f1"
    for key in ("exact_match", "f1", "f1_std", "exact_match_std", "HasAns_f1", "NoAns_f1", "best_f1", "wall_s"):
        assert key in result, key
    assert 0.0 <= result["f1"] <= 1.0 and result["no_answer"] is True
    assert result["eval_windows"] > 9 and result["train_windows_negative"] == 3
    assert result["HasAns_total"] == 2 and result["NoAns_total"] == 1 and len(result["per_seed"]) == 2
    assert 0.0 <= result["answer_window_rate"] <= 1.0
    written = json.loads((tmp_path / "preds.seed0.json").read_text())
    assert set(written) == {"q1", "q2", "q3"} and (tmp_path / "preds.seed1.json").is_file()
    assert read_squad(folder / "test.json").repairs.exact == 2


def test_bad_settings_are_user_errors():
    with pytest.raises(IndusError, match="doc_stride"):
        QAEvaluator(max_length=64, doc_stride=60)
    with pytest.raises(IndusError, match="bad evaluation setting"):
        get_evaluator("qa", no_such_option=1)


def test_null_relative_scoring_prefers_the_window_whose_span_beats_its_own_null(tokenizer):
    # Regression: with sampled answer-free windows the raw span logits are not comparable across windows. A window
    # whose CLS (null) score is high says "not here" even when its best span has a high raw score.
    examples = _examples()[:1]
    windows = tokenize_windows(tokenizer, examples, max_length=48, doc_stride=16, max_question_length=16)
    w = next(i for i in range(len(windows)) if windows.holds_answer(i))
    other = next(i for i in range(len(windows)) if not windows.holds_answer(i))
    ctx_other = np.flatnonzero(windows.offsets[other][:, 0] >= 0)
    spans = {w: (windows.start[w], windows.end[w], 4.0), other: (ctx_other[0], ctx_other[1], 6.0)}
    starts, ends = _planted_logits(windows, spans)
    starts[other][0] = ends[other][0] = 5.0  # the other window is confident that it holds no answer
    raw = decode(examples, windows, starts, ends, n_best=5, max_answer_length=10, scoring="span")[0]
    rel = decode(examples, windows, starts, ends, n_best=5, max_answer_length=10, scoring="null_relative")[0]
    assert raw.window == other and raw.text != "Sylvania City"
    assert rel.window == w and rel.text == "Sylvania City"
    # the null score is the chosen window's own (relative) or the smallest over the windows (raw)
    assert rel.null_score == pytest.approx(-10.0) and rel.span_score == pytest.approx(-2.0)
    assert raw.null_score == pytest.approx(-10.0) and raw.span_score == pytest.approx(2.0)
    assert answer_window_rate(windows, [rel]) == 1.0 and answer_window_rate(windows, [raw]) == 0.0
    with pytest.raises(IndusError, match="window scoring"):
        decode(examples, windows, starts, ends, scoring="best")


def test_answer_labels_in_every_overlapping_window_of_a_long_context(tokenizer):
    # Regression for answer positions across windows: an answer planted at several depths of a long synthetic
    # context is labelled in exactly the windows whose context tokens cover all of it, and the labelled tokens
    # map back through the offsets to the answer text in each of them.
    fact = "The rare isotope was named zorbium after its discoverer."
    for position in (0, 5, 11, 20):
        context = _long_context(fact, position, n=20)
        start = context.index("zorbium after its discoverer")
        answer = Answer("zorbium after its discoverer", start, start)
        ex = QAExample("q", "What was the isotope named?", context, (answer,), 0)
        windows = tokenize_windows(tokenizer, [ex], max_length=64, doc_stride=24, max_question_length=16)
        assert len(windows) > 5
        labelled = []
        for i in range(len(windows)):
            off = windows.offsets[i]
            ctx = off[off[:, 0] >= 0]
            covers = ctx[0, 0] <= answer.start and ctx[-1, 1] >= answer.end
            assert windows.holds_answer(i) == covers, (position, i)
            if covers:
                labelled.append(i)
                s, e = windows.start[i], windows.end[i]
                assert off[s, 0] >= 0 and off[e, 0] >= 0  # labels point at context tokens only
                assert context[off[s, 0] : off[e, 1]] == answer.text
        assert labelled, position


def test_window_scoring_setting_is_validated():
    assert QAEvaluator().window_scoring == "null_relative"
    with pytest.raises(IndusError, match="window_scoring"):
        QAEvaluator(window_scoring="max")


def test_spans_never_come_from_question_or_special_tokens(tokenizer):
    examples = _examples()[:1]
    windows = tokenize_windows(tokenizer, examples, max_length=48, doc_stride=16, max_question_length=16)
    starts, ends = _planted_logits(windows, {})
    for i in range(len(windows)):
        outside = np.flatnonzero(windows.offsets[i][:, 0] < 0)  # CLS, question, SEP (sequence id != 1)
        assert len(outside) > 3
        starts[i][outside[1:]] = ends[i][outside[1:]] = 50.0
    for scoring in ("span", "null_relative"):
        pred = decode(examples, windows, starts, ends, n_best=5, max_answer_length=5, scoring=scoring)[0]
        assert pred.span_score == pytest.approx(-10.0) and pred.start_char >= 0
        assert pred.text == examples[0].context[pred.start_char : pred.end_char] != ""


# ------------------------------------------------------------------------------- window prior (long contexts)


def test_bm25_window_prior_ranks_the_window_sharing_the_question_words_first(tokenizer):
    from indus.evaluation.qa import bm25_window_prior

    examples = _examples()
    short = QAExample("q4", "Where do marmots live?", "Marmots live in the mountains.", (), 2)
    windows = tokenize_windows(tokenizer, [*examples, short], max_length=48, doc_stride=16, max_question_length=16)
    prior = bm25_window_prior(windows, [*examples, short])
    for q in (0, 1):  # the best-matching window of an answerable question holds its answer
        idx = [i for i in range(len(windows)) if windows.example[i] == q]
        assert windows.holds_answer(max(idx, key=lambda i: prior[i]))
        assert abs(prior[idx].mean()) < 1e-9 and prior[idx].std() == pytest.approx(1.0)  # z-scored per question
    only = [i for i in range(len(windows)) if windows.example[i] == 3]
    assert len(only) == 1 and prior[only[0]] == 0.0  # one window: nothing to rank


def test_hard_negatives_are_the_highest_prior_answer_free_windows(tokenizer):
    examples = _examples()
    windows = tokenize_windows(tokenizer, examples, max_length=48, doc_stride=16, max_question_length=16)
    prior = np.arange(len(windows), dtype=np.float64)  # planted: later windows rank higher
    chosen, stats = select_training_windows(windows, examples, 2, random.Random(0), prior)
    for q in range(3):
        free = [i for i in range(len(windows)) if windows.example[i] == q and not windows.holds_answer(i)]
        assert sorted(i for i in chosen if i in free) == sorted(free)[-2:]
    assert stats["train_windows_negative"] == 6


def test_prior_weight_moves_the_answer_to_the_high_prior_window_and_auto_chooses_it_on_dev(tokenizer):
    from indus.evaluation.finetune import Part

    examples = _examples()[:2]
    windows = tokenize_windows(tokenizer, examples, max_length=48, doc_stride=16, max_question_length=16)
    spans, prior = {}, np.zeros(len(windows))
    for q in (0, 1):
        idx = [i for i in range(len(windows)) if windows.example[i] == q]
        gold = next(i for i in idx if windows.holds_answer(i))
        wrong = next(i for i in idx if not windows.holds_answer(i))
        ctx_wrong = np.flatnonzero(windows.offsets[wrong][:, 0] >= 0)
        spans[gold] = (windows.start[gold], windows.end[gold], 4.0)  # the reader prefers a wrong window ...
        spans[wrong] = (ctx_wrong[0], ctx_wrong[1], 6.0)
        prior[gold] = 3.0  # ... the prior the gold one
    windows.prior = prior
    logits = _planted_logits(windows, spans)
    alone = decode(examples, windows, *logits, n_best=5, max_answer_length=10)
    assert answer_window_rate(windows, alone) == 0.0
    helped = decode(examples, windows, *logits, n_best=5, max_answer_length=10, prior_weight=2.0)
    assert answer_window_rate(windows, helped) == 1.0 and helped[0].text == "Sylvania City"

    evaluator = QAEvaluator(max_length=48, doc_stride=16, max_question_length=16, max_answer_length=10, seeds=1)
    assert evaluator.prior_weight == "auto" and evaluator.wants_dev
    part = Part(examples, windows)

    class Ctx:  # the parts of a Context that choosing the weight reads
        dev, eval, extra, train = part, None, {}, None

    evaluator._logits = lambda net, ctx, p: logits
    evaluator._allow_null = lambda ctx: False
    weight, preds = evaluator.choose_prior_weight(None, Ctx)
    assert weight == 2.0  # the smallest weight of the grid whose dev F1 is best (1.0 does not flip the plant)
    assert Ctx.extra["prior_grid"]["0"] < Ctx.extra["prior_grid"]["2"] == 1.0
    assert [p.text for p in preds] == ["Sylvania City", "seven months"]
    assert QAEvaluator(window_prior="none", negative_sampling="random").wants_dev  # lr auto still wants dev
    with pytest.raises(IndusError, match="negative_sampling 'hard'"):
        QAEvaluator(window_prior="none")


def test_answer_limit_auto_is_the_95th_percentile_of_train_answers(tokenizer):
    from indus.evaluation.finetune import Part

    ctx_text = "word " * 200
    train = [QAExample(f"t{n}", "q?", ctx_text, (Answer(" ".join(["word"] * n), 0, 0),), 0) for n in range(1, 101)]

    class Ctx:
        extra, tokenizer = {}, None

    Ctx.tokenizer = tokenizer
    Ctx.train = Part(train, None)
    assert QAEvaluator().answer_limit(Ctx) == 96  # ceil of the 95th percentile of 1..100 tokens
    assert QAEvaluator(max_answer_length="12").answer_limit(Ctx) == 12
    with pytest.raises(IndusError, match="max_answer_length"):
        QAEvaluator(max_answer_length="long")


def test_read_windows_reads_only_the_top_prior_windows(tokenizer, micro_model_dir):
    import torch

    from indus.evaluation.finetune import Part
    from indus.evaluation.qa import f1_by_windows
    from indus.models import load_model, load_tokenizer

    tok = load_tokenizer(str(micro_model_dir))
    examples = _examples()
    windows = tokenize_windows(tok, examples, max_length=48, doc_stride=16, max_question_length=16)
    windows.prior = np.arange(len(windows), dtype=np.float64)
    evaluator = QAEvaluator(max_length=48, doc_stride=16, max_question_length=16, read_windows=2, progress=False)
    net = load_model(str(micro_model_dir), __import__("transformers").AutoModelForQuestionAnswering, seed=0)

    class Ctx:
        pad_id, device, extra = tok.pad_token_id, torch.device("cpu"), {}

    starts, _ = evaluator._logits(net, Ctx, Part(examples, windows))
    for q in range(3):
        idx = [i for i in range(len(windows)) if windows.example[i] == q]
        assert [i for i in idx if len(starts[i])] == sorted(idx)[-2:]  # the two highest-prior windows only
    buckets = f1_by_windows(
        Part(examples, windows),
        {"q1": "Sylvania City", "q2": "", "q3": ""},
        {"q1": ["Sylvania City"], "q2": ["seven months"], "q3": [""]},
    )
    assert sum(b["questions"] for b in buckets.values()) == 3 and set(buckets) <= {"1", "2-8", "9-32", "33+"}
