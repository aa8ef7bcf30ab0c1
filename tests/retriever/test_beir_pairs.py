"""A collection's own judgements as training pairs (``ir/NAME:train``), a dev hold-out of its train queries, and
the pipeline's mine -> train stages."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pytest

from indus.data.beir import holdout, load_beir, qrels_pairs, split_beir_name
from indus.errors import IndusError
from indus.retriever.data import load_pairs
from indus.retriever.mine import MineSettings, mine_negatives, read_mine_pairs


def _sibling(relative: str):
    """A test module of this suite by path (they are not a package)."""
    spec = importlib.util.spec_from_file_location(Path(relative).stem, Path(__file__).parents[1] / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bow_encode = _sibling("retriever/test_mine.py").bow_encode

TOPICS = ["sea ice loss", "stellar winds", "protein folding", "soil carbon", "cloud feedback", "comet dust"]


def beir_folder(root, name="toy"):
    folder = root / name
    (folder / "qrels").mkdir(parents=True)
    docs, queries = [], []
    for i, topic in enumerate(TOPICS):
        docs.append({"_id": f"p{i}", "title": f"On {topic}", "text": f"Measurements of {topic} over ten years."})
        for j in range(4):
            docs.append({"_id": f"n{i}-{j}", "title": f"Note {j}", "text": f"Remarks on {topic} item {j}."})
        queries.append({"_id": f"q{i}", "text": f"what changed in {topic}?"})
    queries.append({"_id": "twin", "text": "What changed in  SEA ICE loss?"})  # q0's text: judged in test
    queries.append({"_id": "t1", "text": "a test question"})
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    train = "".join(f"q{i}\tp{i}\t1\n" for i in range(len(TOPICS))) + "q1\tn1-0\t0\n"  # a score-0 row: no pair
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + train)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\ntwin\tp0\t1\nt1\tp1\t1\n")
    return folder


def test_qrels_pairs_are_title_and_text_and_leave_out_a_test_twin(tmp_path):
    folder = beir_folder(tmp_path)
    pairs = list(qrels_pairs(folder, "train"))
    # q0 reads like the test query "twin" (case and spaces aside): left out; the score-0 row gives no pair
    assert [doc_id for _, _, doc_id in pairs] == [f"p{i}" for i in range(1, len(TOPICS))]
    assert pairs[0] == (
        "what changed in stellar winds?",
        "On stellar winds Measurements of stellar winds over ten years.",
        "p1",
    )


def test_split_names_resolve_only_for_beir_folders(tmp_path):
    folder = beir_folder(tmp_path)
    assert split_beir_name(f"{folder}:train") == (folder, "train")
    assert split_beir_name(str(folder / "corpus.jsonl")) is None  # no split: not a judgement name
    assert split_beir_name(f"{folder / 'corpus.jsonl'}:train") is None  # a file, not a BEIR folder
    with pytest.raises(IndusError, match=r"no qrels/dev.tsv \(splits found: test, train\)"):
        split_beir_name(f"{folder}:dev")


def test_training_and_mining_read_a_collection_split(tmp_path, monkeypatch):
    from indus.retriever import bi_encoder, mine

    folder = beir_folder(tmp_path)
    data = load_pairs([f"{folder}:train"])
    assert data.counts == {"toy-train": len(TOPICS) - 1}
    mine_pairs, anchors, _ = read_mine_pairs([f"{folder}:train"])
    assert [p.positive_id for p in mine_pairs] == [f"p{i}" for i in range(1, len(TOPICS))]

    class Model:
        def get_sentence_embedding_dimension(self):
            return 64

    monkeypatch.setattr(bi_encoder, "encode", lambda m, texts, batch_size=64, progress=False: bow_encode(m, texts))
    monkeypatch.setattr(mine.LazyModel, "get", lambda self: Model())
    out = tmp_path / "mined.jsonl.gz"
    settings = MineSettings(top_k=30, rank_range=(1, 30), margin=None, negatives=30)
    mine_negatives("minilm", [f"{folder}:train"], folder, out, settings, cache_dir=tmp_path / "c", progress=False)
    with gzip.open(out, "rt") as fh:
        rows = [json.loads(line) for line in fh]
    assert rows and all(r["source"] == "toy-train" for r in rows)
    for row in rows:  # the judged document never comes back, and negatives are title + text like the positive
        own = next(p for p in mine_pairs if p.anchor_text == row["anchor"]).positive_id
        assert row["negative_id"] != own and row["negative"] != row["positive"]
        assert row["negative"].startswith(("On ", "Note "))


def test_holdout_partitions_train_queries_and_keeps_test(tmp_path):
    folder = beir_folder(tmp_path)
    counts = holdout(folder, tmp_path / "held", fraction=0.4, seed=1)
    train, dev = load_beir(tmp_path / "held", "train"), load_beir(tmp_path / "held", "dev")
    assert set(train.qrels).isdisjoint(dev.qrels)
    assert set(train.qrels) | set(dev.qrels) == set(load_beir(folder, "train").qrels)
    assert counts == {"train": len(train.qrels), "dev": len(dev.qrels), "test": 2}
    assert len(dev.qrels) == round(0.4 * len(TOPICS))
    assert load_beir(tmp_path / "held", "test").qrels == load_beir(folder, "test").qrels
    again = holdout(folder, tmp_path / "held2", fraction=0.4, seed=1)
    assert again == counts and load_beir(tmp_path / "held2", "dev").qrels == dev.qrels  # seeded
    with pytest.raises(IndusError, match="fraction"):
        holdout(folder, tmp_path / "x", fraction=1.0)


def test_pipeline_mines_before_training(tmp_path, monkeypatch):
    """A retriever run with ``mine:`` gets a ``mine/<name>`` stage whose file its training stage reads."""
    import copy

    import yaml

    from indus.config import load_config
    from indus.pipeline import PipelineConfig, build_plan
    from indus.retriever import bi_encoder, mine

    micro = _sibling("pipeline/test_pipeline_micro.py")
    root = micro._data_root(tmp_path / "data")
    beir_folder(root / "ir", "toysplit")
    monkeypatch.setenv("INDUS_DATA", str(root))
    monkeypatch.setenv("INDUS_CACHE", str(tmp_path / "cache"))
    cfg = copy.deepcopy(micro.MICRO)
    cfg["retriever"].append(
        {
            "name": "ret-mined",
            "model": "random:micro",
            "pairs": ["ir/toysplit:train"],
            "mine": {"corpus": "ir/toysplit", "top_k": 10, "rank_range": [1, 10]},
            "settings": {"max_steps": 1, "batch_size": 4, "max_seq_length": 32},
        }
    )
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    plan = build_plan(load_config(PipelineConfig, path), tmp_path / "run")
    names = list(plan.stages)
    assert names.index("mine/ret-mined") < names.index("retriever/ret-mined")
    train = plan.stages["retriever/ret-mined"]
    assert train.inputs == ["mine/ret-mined"] and plan.stages["mine/ret-mined"].settings["mine"]["top_k"] == 10

    class Model:
        def get_sentence_embedding_dimension(self):
            return 64

    monkeypatch.setattr(bi_encoder, "encode", lambda m, texts, batch_size=64, progress=False: bow_encode(m, texts))
    monkeypatch.setattr(mine.LazyModel, "get", lambda self: Model())
    stage = plan.stages["mine/ret-mined"]
    stage.path.mkdir(parents=True)
    summary = stage.fn(stage.path, False)
    assert summary["pairs"] == "mined.jsonl.gz" and summary["summary"]["rows"] > 0
    assert any((tmp_path / "cache" / "embeddings").glob("*.npy"))
    out = tmp_path / "trained"
    out.mkdir()
    result = train.fn(out, False)
    assert result["summary"]["hard_negative_sources"] == ["toysplit-train"]
    # another mining setting changes the mine stage's key and so the training stage's
    cfg["retriever"][-1]["mine"]["margin"] = 0.9
    path.write_text(yaml.safe_dump(cfg))
    other = build_plan(load_config(PipelineConfig, path), tmp_path / "run")
    assert other.stages["retriever/ret-mined"].key != train.key
    assert other.stages["retriever/ret"].key == plan.stages["retriever/ret"].key


def test_cli_holdout_writes_a_folder_the_evaluator_reads(tmp_path, monkeypatch, capsys):
    from cli_runner import invoke

    folder = beir_folder(tmp_path)
    code, stdout, _ = invoke(
        monkeypatch, capsys, "data", "holdout", folder, "--out", tmp_path / "h", "--fraction", "0.5"
    )
    assert code == 0 and "dev" in stdout
    assert len(load_beir(tmp_path / "h", "dev").qrels) == 3
    code, _, err = invoke(monkeypatch, capsys, "data", "holdout", folder, "--out", tmp_path / "h2", "--split", "x")
    assert code == 2 and "no qrels/x.tsv" in err and "Traceback" not in err
