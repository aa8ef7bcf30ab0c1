"""Hard-negative mining: positives never come back as negatives, the relative-margin filter drops a planted
near-duplicate of the positive, the embedding cache spares a second run every model call, and the output is what
``indus retriever train`` reads."""

from __future__ import annotations

import gzip
import hashlib
import json
import re

import numpy as np
import pytest

from cli_runner import invoke
from indus.retriever import bi_encoder, mine
from indus.retriever.data import load_pairs
from indus.retriever.mine import MineSettings, mine_negatives, summary_path

DIM = 64
WORDS = re.compile(r"\w+")


class BagOfWords:
    """A stand-in encoder whose cosine is word overlap: similar texts are close, as with a trained model."""

    def get_sentence_embedding_dimension(self) -> int:
        return DIM


def bow_encode(model, texts, batch_size=64, progress=False):
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in WORDS.findall(text.lower()):
            out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture
def calls(monkeypatch):
    """Count encoder calls and model loads; the encoder is :class:`BagOfWords`."""
    counter = {"encode": 0, "load": 0}

    def encode(model, texts, batch_size=64, progress=False):
        counter["encode"] += 1
        return bow_encode(model, texts)

    def get(self):
        if self._model is None:
            counter["load"] += 1
            self._model = BagOfWords()
        return self._model

    monkeypatch.setattr(bi_encoder, "encode", encode)
    monkeypatch.setattr(mine.LazyModel, "get", get)
    return counter


TOPICS = [
    "stellar winds shape the heliosphere",
    "dark matter halos around galaxies",
    "protein folding pathways",
    "ocean heat content rises",
    "gene regulation by enhancers",
    "solar flares and radio bursts",
    "cloud feedback in warming",
    "comet dust composition",
    "sea ice loss in the arctic",
    "soil carbon storage",
]


def write_data(tmp_path, near_duplicate: bool = True):
    corpus = tmp_path / "corpus.jsonl"
    pairs = tmp_path / "pairs.jsonl"
    docs, rows = [], []
    for i, topic in enumerate(TOPICS):
        positive = f"A study of {topic}: measurements and models number {i}."
        docs.append({"_id": f"pos{i}", "title": "", "text": positive})
        for j in range(6):  # related but different documents: the hard negatives
            docs.append({"_id": f"d{i}-{j}", "title": f"Note {j}", "text": f"Remarks on {topic.split()[0]} item {j}."})
        rows.append({"anchor": f"what do we know about {topic}?", "positive": positive, "source": "toy"})
    if near_duplicate:  # the positive of pair 0 again, one word changed: an unlabelled positive
        docs.append({"_id": "dup0", "title": "", "text": rows[0]["positive"].replace("models", "model")})
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return pairs, corpus


def read_rows(path):
    with gzip.open(path, "rt") as fh:
        return [json.loads(line) for line in fh]


def test_positives_never_negatives_and_the_output_trains(tmp_path, calls):
    pairs, corpus = write_data(tmp_path)
    out = tmp_path / "mined.jsonl.gz"
    settings = MineSettings(top_k=20, rank_range=(1, 20), margin=None, negatives=3)
    summary = mine_negatives("minilm", [pairs], corpus, out, settings, cache_dir=tmp_path / "cache", progress=False)
    rows = read_rows(out)
    assert len(rows) == summary["rows"] == 3 * len(TOPICS)
    for row in rows:
        assert row["negative"] != row["positive"]
    positive_ids = {f"pos{i}" for i in range(len(TOPICS))}
    for row in rows:  # each anchor's own positive never; other anchors' positives may be its negatives
        own = f"pos{next(i for i, t in enumerate(TOPICS) if t in row['anchor'])}"
        assert row["negative_id"] != own
    assert {r["negative_id"] for r in rows} & positive_ids  # (so the check above is not vacuous)
    # every pair's positive is the top dense hit, yet none comes back: skipped by identical text
    assert summary["skipped_positive"] >= len(TOPICS)
    data = load_pairs([out])
    assert data.negatives == {"toy": True} and data.n_pairs == len(rows)


def test_positive_id_is_skipped_even_when_the_text_differs(tmp_path, calls):
    pairs, corpus = write_data(tmp_path, near_duplicate=False)
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    rows[0]["positive"] = "paraphrase of the positive"  # no longer identical to pos0's text
    rows[0]["positive_id"] = "pos0"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "mined.jsonl.gz"
    mine_negatives(
        "minilm",
        [pairs],
        corpus,
        out,
        MineSettings(top_k=60, rank_range=(1, 60), margin=None, negatives=60),
        cache_dir=tmp_path / "c",
        progress=False,
    )
    first = [r for r in read_rows(out) if r["anchor"] == rows[0]["anchor"]]
    assert first and "pos0" not in {r["negative_id"] for r in first}


def test_margin_filter_removes_a_planted_near_duplicate(tmp_path, calls):
    pairs, corpus = write_data(tmp_path)
    settings = dict(top_k=20, rank_range=(1, 20), negatives=20)
    off = mine_negatives(
        "minilm",
        [pairs],
        corpus,
        tmp_path / "off.jsonl.gz",
        MineSettings(margin=None, **settings),
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    on = mine_negatives(
        "minilm",
        [pairs],
        corpus,
        tmp_path / "on.jsonl.gz",
        MineSettings(margin=0.95, **settings),
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    anchor = f"what do we know about {TOPICS[0]}?"
    neg_off = {r["negative_id"] for r in read_rows(tmp_path / "off.jsonl.gz") if r["anchor"] == anchor}
    neg_on = {r["negative_id"] for r in read_rows(tmp_path / "on.jsonl.gz") if r["anchor"] == anchor}
    assert "dup0" in neg_off  # without the filter the near-duplicate is mined as a "negative"
    assert "dup0" not in neg_on and neg_on  # with it, it is gone while other negatives remain
    assert off["removed_by_margin"] == 0 and on["removed_by_margin"] >= 1
    saved = json.loads(summary_path(tmp_path / "on.jsonl.gz").read_text())
    assert saved["removed_by_margin"] == on["removed_by_margin"]


def test_second_run_hits_the_cache_without_a_model_call(tmp_path, calls):
    pairs, corpus = write_data(tmp_path)
    first = mine_negatives(
        "minilm", [pairs], corpus, tmp_path / "a.jsonl.gz", cache_dir=tmp_path / "cache", progress=False
    )
    assert calls["encode"] >= 3 and calls["load"] == 1 and not first["cache"]["corpus_hit"]
    before = dict(calls)
    second = mine_negatives(
        "minilm", [pairs], corpus, tmp_path / "b.jsonl.gz", cache_dir=tmp_path / "cache", progress=False
    )
    assert calls == before  # no encode, no model load
    assert second["cache"] == {
        **first["cache"],
        "corpus_hit": True,
        "anchors_hit": True,
        "positives_hit": True,
        "model_loaded": False,
    }
    assert read_rows(tmp_path / "a.jsonl.gz") == read_rows(tmp_path / "b.jsonl.gz")
    # a changed corpus is a new cache entry
    with corpus.open("a") as fh:
        fh.write(json.dumps({"_id": "extra", "text": "one more document"}) + "\n")
    third = mine_negatives(
        "minilm", [pairs], corpus, tmp_path / "c.jsonl.gz", cache_dir=tmp_path / "cache", progress=False
    )
    assert not third["cache"]["corpus_hit"] and third["cache"]["anchors_hit"]


@pytest.mark.parametrize("mode", ["bm25", "hybrid"])
def test_bm25_and_hybrid_modes_skip_positives(tmp_path, calls, mode):
    pairs, corpus = write_data(tmp_path)
    out = tmp_path / f"{mode}.jsonl.gz"
    summary = mine_negatives(
        "minilm",
        [pairs],
        corpus,
        out,
        MineSettings(mode=mode, top_k=10, rank_range=(1, 10), margin=None, negatives=10),
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    rows = read_rows(out)
    assert rows and summary["mode"] == mode
    assert all(r["negative_id"] not in {f"pos{TOPICS.index(t)}" for t in TOPICS if t in r["anchor"]} for r in rows)


def test_streamed_search_equals_one_flat_search():
    rng = np.random.default_rng(0)
    docs = rng.standard_normal((103, 8)).astype(np.float32)
    queries = rng.standard_normal((5, 8)).astype(np.float32)
    scores, rows = mine.dense_top(queries, docs, 7, chunk_size=10)
    exact = np.argsort(-(queries @ docs.T), axis=1)[:, :7]
    assert (rows == exact).all()
    assert np.allclose(scores, np.take_along_axis(queries @ docs.T, exact, axis=1), atol=1e-5)


def test_cli_mines_with_a_random_micro_model(tmp_path, monkeypatch, capsys):
    pairs, corpus = write_data(tmp_path)
    out = tmp_path / "m.jsonl.gz"
    code, stdout, _ = invoke(
        monkeypatch,
        capsys,
        "retriever",
        "mine",
        "--model",
        "random:micro",
        "--pairs",
        pairs,
        "--corpus",
        corpus,
        "--out",
        out,
        "--top-k",
        "20",
        "--range",
        "1-20",
        "--no-filter",
        "--cache",
        tmp_path / "cache",
    )
    assert code == 0, stdout
    summary = json.loads(summary_path(out).read_text())
    assert "margin filter removed" in stdout and summary["rows"] == len(read_rows(out)) > 0
    for row in read_rows(out):
        assert row["negative"] != row["positive"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--range", "30-10"], "--range"),
        (["--range", "10-90"], "must end at or before --top-k"),
        (["--mode", "sparse"], "--mode must be one of"),
        (["--model", "bm25"], "must be a dense model"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, monkeypatch, capsys, args, expected):
    pairs, corpus = write_data(tmp_path)
    base = {
        "--model": "random:micro",
        "--pairs": str(pairs),
        "--corpus": str(corpus),
        "--out": str(tmp_path / "x.jsonl.gz"),
    }
    extra = dict(zip(args[::2], args[1::2]))
    argv = [x for kv in {**base, **extra}.items() for x in kv]
    code, _, err = invoke(monkeypatch, capsys, "retriever", "mine", *argv)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1


def test_a_bad_pairs_line_names_file_and_line(tmp_path, monkeypatch, capsys):
    pairs, corpus = write_data(tmp_path)
    pairs.write_text(pairs.read_text() + '{"anchor": "x"}\n')
    code, _, err = invoke(
        monkeypatch,
        capsys,
        "retriever",
        "mine",
        "--model",
        "random:micro",
        "--pairs",
        pairs,
        "--corpus",
        corpus,
        "--out",
        tmp_path / "x.jsonl.gz",
    )
    assert code == 2 and f"{pairs}:11" in err and len(err.strip().splitlines()) == 1
