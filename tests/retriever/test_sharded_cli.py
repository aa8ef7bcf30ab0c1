"""Sharded encoding through the CLI: ``indus retriever index`` and ``indus eval ir`` on two processes.

The single-process tests check the pieces (gathered encoding, the main-process broadcast, the no-op context); the
two-process run (``sharded_cli_worker.py`` under torchrun, gloo on CPU, launched once per module) runs both
commands as a cluster would and checks that the vectors equal one process's, that the index and the results are
written once, by the main process, and that nothing of the other process is left in the output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from indus.distributed import encode_gathered, run_on_main, sharded_encoding, sharding_active
from indus.errors import IndusError

WORKER = Path(__file__).with_name("sharded_cli_worker.py")
SRC = Path(__file__).resolve().parents[2] / "src"
TOPICS = [
    "stellar winds",
    "dark matter halos",
    "protein folding",
    "ocean heat",
    "comet dust",
    "soil carbon",
    "sea ice",
    "gene regulation",
    "cloud feedback",
    "coral reefs",
    "exoplanet transits",
]


def make_beir(root: Path) -> Path:
    """11 documents (an odd count: the two shards differ), 4 queries, qrels on the test split."""
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w") as fh:
        for i, topic in enumerate(TOPICS):
            fh.write(json.dumps({"_id": f"d{i}", "title": topic, "text": f"a study of {topic} number {i}"}) + "\n")
    with (root / "queries.jsonl").open("w") as fh:
        for i in (0, 3, 6, 9):
            fh.write(json.dumps({"_id": f"q{i}", "text": f"what about {TOPICS[i]}?"}) + "\n")
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in (0, 3, 6, 9))
    )
    return root


def test_encode_gathered_in_one_process_is_encode(micro_model_dir):
    from indus.models import load_sentence_transformer
    from indus.retriever.bi_encoder import encode

    model = load_sentence_transformer(micro_model_dir, max_seq_length=16).eval()
    texts = [f"text number {i}" for i in range(7)]
    calls = []

    def encode_fn(m, chunk, batch_size):
        calls.append(len(chunk))
        return encode(m, chunk, batch_size=batch_size)

    out = encode_gathered(model, texts, chunk_size=3, batch_size=2, encode_fn=encode_fn)
    assert calls == [3, 3, 1]
    np.testing.assert_allclose(out, encode(model, texts, batch_size=4), atol=1e-5)


def test_one_process_context_shards_nothing_and_runs_main_work_itself(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with sharded_encoding() as (rank, world):
        assert (rank, world) == (0, 1) and not sharding_active()
        assert run_on_main(lambda: {"count": 3}) == {"count": 3}
        with pytest.raises(IndusError, match="bad"):
            run_on_main(lambda: (_ for _ in ()).throw(IndusError("bad")))


def test_index_in_one_process_records_one_encoding_process(tmp_path, micro_model_dir):
    from indus.retriever.index import build_index

    beir = make_beir(tmp_path / "beir")
    with sharded_encoding():
        meta = build_index(str(micro_model_dir), beir, tmp_path / "index", progress=False)
    assert meta["encode_processes"] == 1 and meta["count"] == len(TOPICS)
    assert not list((tmp_path / "index").glob(".staging-*"))


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, micro_model_dir):
    """``indus retriever index`` then ``indus eval ir`` on two processes; the folders and each rank's log."""
    root = tmp_path_factory.mktemp("sharded-cli")
    beir, logs = make_beir(root / "beir"), root / "logs"
    logs.mkdir()
    commands = [
        [
            "retriever",
            "index",
            "--model",
            str(micro_model_dir),
            "--corpus",
            str(beir),
            "--out",
            str(root / "index"),
            "--batch-size",
            "2",
        ],
        [
            "eval",
            "ir",
            "--model",
            str(micro_model_dir),
            "--data",
            str(beir),
            "--batch-size",
            "2",
            "--json",
            str(root / "ir.json"),
            "--run",
            str(root / "ir.trec"),
            "--set",
            "latency_queries=2",
        ],
        # hard-negative mining: both processes encode the corpus (a cache miss), the main process mines
        [
            "retriever",
            "mine",
            "--model",
            str(micro_model_dir),
            "--pairs",
            str(root / "pairs.jsonl"),
            "--corpus",
            str(beir),
            "--out",
            str(root / "mined.jsonl.gz"),
            "--cache",
            str(root / "cache"),
            "--top-k",
            "6",
            "--range",
            "1-6",
            "--batch-size",
            "2",
        ],
        # again into the finished index without --overwrite: the main process refuses, the other must not hang
        ["retriever", "index", "--model", str(micro_model_dir), "--corpus", str(beir), "--out", str(root / "index")],
    ]
    (root / "commands.json").write_text(json.dumps(commands))
    (root / "pairs.jsonl").write_text(
        "".join(
            json.dumps({"anchor": f"what about {TOPICS[i]}?", "positive": f"{TOPICS[i]}\na study of {TOPICS[i]}"})
            + "\n"
            for i in (0, 3, 6)
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(WORKER),
        str(logs),
        str(root / "commands.json"),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    records = {r: [json.loads(line) for line in (logs / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)}
    pids = {r: int((logs / f"pid{r}").read_text()) for r in (0, 1)}
    exits = {r: [int(e["exit"]) for e in records[r] if "exit" in e] for r in (0, 1)}
    assert exits == {0: [0, 0, 0, 2], 1: [0, 0, 0, 2]}, done.stderr[-4000:]
    assert "the main process failed" in done.stderr and "not empty" in done.stderr
    records = {r: [e for e in records[r] if "exit" not in e] for r in (0, 1)}
    return root, beir, records, pids


@pytest.mark.slow  # one torchrun launch of two processes running four commands: 30-90 s on 2 busy cores
def test_sharded_index_holds_the_vectors_of_one_process(two_processes, micro_model_dir, tmp_path):
    from indus.ann import read_faiss_index
    from indus.retriever.bi_encoder import encode, load_bi_encoder
    from indus.retriever.index import build_index, read_texts

    root, beir, _, _ = two_processes
    meta = json.loads((root / "index" / "meta.json").read_text())
    assert meta["encode_processes"] == 2 and meta["count"] == len(TOPICS)
    index = read_faiss_index(root / "index" / "index.faiss", mmap=False)
    sharded = index.reconstruct_n(0, index.ntotal)  # (N, D)
    single_meta = build_index(str(micro_model_dir), beir, tmp_path / "single", progress=False)  # one process
    single = read_faiss_index(tmp_path / "single" / "index.faiss", mmap=False).reconstruct_n(0, len(TOPICS))
    np.testing.assert_allclose(sharded, single, atol=1e-5)
    texts = [text for _, text in read_texts(beir / "corpus.jsonl")]
    np.testing.assert_allclose(sharded, encode(load_bi_encoder(str(micro_model_dir)), texts), atol=1e-5)
    assert single_meta["encode_processes"] == 1
    assert json.loads((root / "index" / "ids.json").read_text()) == [f"d{i}" for i in range(len(TOPICS))]


@pytest.mark.slow
def test_sharded_index_is_written_once_by_the_main_process(two_processes):
    root, _, records, pids = two_processes
    out = root / "index"
    assert records[1] == []  # the other process moved no file into place and wrote no faiss index
    # files only: measuring an index's bytes (indus.ann.index_bytes) may serialise it through a VectorIOWriter
    faiss_writes = [Path(r["faiss"]) for r in records[0] if "faiss" in r and not r["faiss"].startswith("<")]
    assert len(faiss_writes) == 1 and faiss_writes[0].name == "index.faiss"  # into the folder moved into place
    into_out = [Path(r["replace"]).name for r in records[0] if "replace" in r and Path(r["replace"]).parent == out]
    assert sorted(into_out) == sorted(
        [".indus-run.json", "index.faiss", "ids.json", "docs.jsonl", "bm25", "meta.json"]
    )  # each once: the run record, then the index's parts
    assert sorted(p.name for p in out.iterdir()) == sorted(into_out)  # no staging folder or vectors left
    marker = json.loads((out / ".indus-run.json").read_text())
    assert marker["pid"] == pids[0] and marker["command"] == "retriever index"


def read_run(path: Path) -> dict[str, dict[str, float]]:
    """A TREC run as ``{query: {doc: score}}``."""
    run: dict[str, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        qid, _, doc, _, score, _ = line.split()
        run.setdefault(qid, {})[doc] = float(score)
    return run


@pytest.mark.slow
def test_sharded_eval_ir_scores_once_as_one_process_would(two_processes, micro_model_dir, tmp_path):
    from indus.evaluation.ir import IREvaluator

    root, beir, records, _ = two_processes
    result = json.loads((root / "ir.json").read_text())
    single = IREvaluator(progress=False, latency_queries=2, batch_size=2, run_path=tmp_path / "single.trec").evaluate(
        str(micro_model_dir), beir
    )
    assert result["encode_processes"] == 2 and single["encode_processes"] == 1
    for metric in ("ndcg@10", "recall@10", "recall@100", "mrr@10"):
        assert result[metric] == pytest.approx(single[metric], abs=1e-9), metric
    sharded_run, single_run = read_run(root / "ir.trec"), read_run(tmp_path / "single.trec")
    assert sharded_run.keys() == single_run.keys() and len(sharded_run) == 4
    for qid, scores in single_run.items():  # every document's score, not only the top one's
        assert sharded_run[qid].keys() == scores.keys() and len(scores) == len(TOPICS)
        for doc, score in scores.items():
            assert sharded_run[qid][doc] == pytest.approx(score, abs=1e-5), (qid, doc)
    assert result["docs"] == len(TOPICS) and result["queries"] == 4
    written = [Path(r["replace"]).name for r in records[0] if "replace" in r]
    assert written.count("ir.json") == 1 and written.count("ir.trec") == 1
    assert not any(Path(r.get("replace", "")).name in ("ir.json", "ir.trec") for r in records[1])


@pytest.mark.slow
def test_sharded_mining_encodes_the_corpus_as_one_process_and_writes_once(two_processes, micro_model_dir, tmp_path):
    from indus.retriever.bi_encoder import encode, load_bi_encoder
    from indus.retriever.index import read_texts

    root, beir, records, _ = two_processes
    cached = [p for p in (root / "cache").glob("*.npy") if not p.name.startswith(".")]
    texts = [text for _, text in read_texts(beir / "corpus.jsonl")]
    corpus = [np.load(p) for p in cached if np.load(p, mmap_mode="r").shape[0] == len(TOPICS)]
    assert len(corpus) == 1  # the corpus's embeddings, put in the cache by the two processes together
    np.testing.assert_allclose(corpus[0], encode(load_bi_encoder(str(micro_model_dir)), texts), atol=1e-5)
    assert not list((root / "cache").glob(".*.sharded.npy"))  # the staging file was moved into place
    summary = json.loads((root / "mined.summary.json").read_text())
    assert summary["pairs"] == 3 and summary["rows"] >= 1
    mined = [Path(r["replace"]).name for r in records[0] if "replace" in r]
    assert mined.count("mined.jsonl.gz") == 1
    assert not any("mined" in Path(r.get("replace", "")).name for r in records[1])  # the other wrote no output
