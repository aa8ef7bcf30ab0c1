"""The whole pipeline at micro scale (2-layer, 32-wide models, 50 documents), then the cache rules on it."""

from __future__ import annotations

import json
import os
import random
import shutil

import pytest
import yaml

from indus.config import load_config
from indus.errors import IndusError
from indus.pipeline import PipelineConfig, build_plan, explain, run_pipeline
from indus.pipeline.report import speedup

WORDS = (
    "protein cell gene enzyme receptor solar plasma magnetic orbit comet climate aerosol ocean ice sheet "
    "glacier neutron star galaxy cluster drug dose tumour therapy"
).split()


def _sentence(rng: random.Random, n: int = 12) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)) + "."


def _data_root(root):
    rng = random.Random(0)
    (root / "corpus").mkdir(parents=True)
    for split, n in (("train", 50), ("valid", 10)):
        with (root / "corpus" / f"{split}.jsonl").open("w") as fh:
            for i in range(n):
                fh.write(json.dumps({"id": f"{split}{i}", "text": " ".join(_sentence(rng) for _ in range(6))}) + "\n")
    ner = root / "ner" / "toy"
    ner.mkdir(parents=True)
    for split in ("train", "test"):
        lines = []
        for _ in range(12):
            words = [rng.choice(WORDS) for _ in range(8)]
            for w in words:
                lines.append(f"{w}\t{'B-Bio' if w in ('protein', 'gene', 'enzyme') else 'O'}")
            lines.append("")
        (ner / f"{split}.tsv").write_text("\n".join(lines))
    ir = root / "ir" / "toyir"
    (ir / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": "", "text": _sentence(rng)} for i in range(30)]
    (ir / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = [{"_id": f"q{i}", "text": docs[i]["text"][:40]} for i in range(6)]
    (ir / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    qrels = "".join(f"q{i}\td{i}\t1\n" for i in range(6))
    (ir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    (root / "pairs").mkdir()
    with (root / "pairs" / "toy.jsonl").open("w") as fh:
        for i in range(40):
            pair = {"anchor": _sentence(rng, 4), "positive": _sentence(rng), "source": f"s{i % 2}"}
            fh.write(json.dumps(pair) + "\n")
    return root


MICRO = {
    "name": "micro",
    "corpus": {"train": "corpus/train.jsonl", "valid": "corpus/valid.jsonl"},
    "tokenizer": {"vocab_size": 400, "compare_with": ["minilm"]},
    "pretrain": {
        "defaults": {
            "seq_len": 32,
            "batch_size": 4,
            "eval_every": 4,
            "checkpoint_every": 4,
            "log_every": 1,
            "valid_max_seqs": 8,
            "bf16": False,
        },
        "runs": [
            {"name": "micro-s", "preset": "micro", "settings": {"max_steps": 3}},
            {"name": "micro-m", "preset": "micro", "settings": {"max_steps": 6}},
            {"name": "micro-l", "preset": "micro", "settings": {"max_steps": 9}},
        ],
    },
    "distill": [
        {
            "name": "micro-student",
            "teacher": "micro-l",
            "student_preset": "micro",
            "settings": {"max_steps": 3, "head_fit_steps": 2},
        }
    ],
    "retriever": [
        {
            "name": "ret",
            "model": "random:micro",
            "pairs": ["pairs/toy.jsonl"],
            "settings": {"max_steps": 2, "batch_size": 4, "max_seq_length": 32},
        }
    ],
    "retriever_distill": [
        {
            "name": "ret-student",
            "teacher": "ret",
            "student": "random:micro",
            "settings": {"max_steps": 2, "batch_size": 4, "max_seq_length": 32},
        }
    ],
    "eval": {
        "baselines": ["random", "minilm", "bm25"],
        "latency_sentences": 3,
        "tasks": [
            {"task": "ner", "data": "toy", "settings": {"seeds": 1, "epochs": 1, "progress": False}},
            {"task": "ir", "data": "toyir", "settings": {"latency_queries": 2, "progress": False}},
        ],
    },
    "forecast": {"multipliers": [10]},
    "scaling": {"n_bootstrap": 0},
}


@pytest.fixture()
def micro_run(tmp_path, monkeypatch):
    monkeypatch.setenv("INDUS_DATA", str(_data_root(tmp_path / "data")))
    path = tmp_path / "micro.yaml"
    path.write_text(yaml.safe_dump(MICRO))
    return path, tmp_path / "run"


def test_micro_pipeline_end_to_end_then_cached_then_one_change(micro_run):
    config, out = micro_run
    logs: list[str] = []
    summary = run_pipeline(load_config(PipelineConfig, config), out, log=logs.append)
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    report = (out / "report.md").read_text()
    for heading in ("Tokenizer", "Encoders", "Every model against the baselines", "Forecast", "Observational"):
        assert heading in report
    models = {(e["model"], e["task"]) for e in summary["evals"]}
    assert {
        ("random:micro", "ner"),
        ("minilm", "ner"),
        ("micro-l", "ner"),
        ("micro-student", "ner"),
        ("bm25", "ir"),
        ("minilm", "ir"),
        ("ret", "ir"),
        ("ret-student", "ir"),
    } <= models
    fc = summary["forecast"]["ner:toy"]
    assert fc["n"] == 3 and fc["compute"]["forecasts"][0]["multiplier"] == 10
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and 'src="figures/' not in html
    assert sorted(p.name for p in (out / "figures").glob("*.png")) == [
        "fertility.png",
        "forecast.png",
        "loss_curves.png",
        "models.png",
        "tradeoff.png",
    ]
    if os.environ.get("INDUS_SAVE_FIGURES"):  # to look at them: INDUS_SAVE_FIGURES=DIR pytest tests/pipeline
        shutil.copytree(out / "figures", os.environ["INDUS_SAVE_FIGURES"], dirs_exist_ok=True)
    # the speed-up column is teacher ms / student ms with the precision to show it (a fixed decimal wrote "0.0x")
    lat = summary["latency"]
    speedups = [
        line.rsplit("|", 2)[-2].strip() for line in report.splitlines() if line.startswith("| ner: toy | micro-student")
    ]
    assert speedups == [speedup(lat["micro-l"], lat["micro-student"])] and float(speedups[0].rstrip("x")) > 0
    assert not any(s["cached"] for s in summary["stages"])

    again = run_pipeline(load_config(PipelineConfig, config), out, log=logs.append)
    assert all(s["cached"] for s in again["stages"])
    assert again["evals"] == summary["evals"]

    # one setting of the middle rung changes: the dry run says what will rerun and why, and runs nothing
    middle = load_config(
        PipelineConfig,
        config,
        [
            "pretrain.runs="
            + json.dumps(
                [
                    *MICRO["pretrain"]["runs"][:1],
                    {"name": "micro-m", "preset": "micro", "settings": {"max_steps": 5}},
                    MICRO["pretrain"]["runs"][2],
                ]
            )
        ],
    )
    before = sorted(p.name for p in (out / "stages").rglob("*"))
    dry = {line.split()[1]: line for line in explain(build_plan(middle, out))[:-1]}
    assert sorted(p.name for p in (out / "stages").rglob("*")) == before
    to_run = {name for name, line in dry.items() if not line.startswith("[cached]")}
    assert to_run == {"pretrain/micro-m", "eval/ner-toy/micro-m", "latency/micro-m"}
    assert dry["pretrain/micro-m"].endswith("config.max_steps: 6 -> 5")
    assert dry["eval/ner-toy/micro-m"].endswith("input pretrain/micro-m changed")
    # ... and the run reruns exactly that run, its evaluations and latency; nothing else
    changed = run_pipeline(middle, out, log=logs.append)
    ran = {s["name"] for s in changed["stages"] if not s["cached"]}
    assert ran == to_run

    # a per-model setting reruns that model's evaluation only
    tuned = run_pipeline(
        load_config(PipelineConfig, config, ["eval.tasks.0.per_model={minilm: {lr: 1.0e-4}}"]), out, log=logs.append
    )
    assert {s["name"] for s in tuned["stages"] if not s["cached"]} == {"eval/ner-toy/minilm"}
    minilm = next(e for e in tuned["evals"] if e["model"] == "minilm" and e["task"] == "ner")
    assert minilm["result"]["settings"]["lr"] == pytest.approx(1e-4)
    with pytest.raises(IndusError, match="per_model: no model named 'mini-lm'"):
        run_pipeline(load_config(PipelineConfig, config, ["eval.tasks.0.per_model={mini-lm: {lr: 1.0e-4}}"]), out)
