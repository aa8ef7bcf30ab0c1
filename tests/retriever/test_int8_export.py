"""``indus retriever export --format int8``: a folder whose Linear layers load as int8 through every indus loader,
close to the float model, and that ``indus eval ir --model`` accepts."""

from __future__ import annotations

import json

import numpy as np
import torch

from cli_runner import invoke
from indus.models import load_sentence_transformer
from indus.retriever.bi_encoder import encode, load_bi_encoder
from indus.retriever.quantize import QUANT_FILE


def test_int8_export_loads_quantized_and_evaluates(tmp_path, monkeypatch, capsys):
    out = tmp_path / "int8"
    code, stdout, err = invoke(
        monkeypatch, capsys, "retriever", "export", "--format", "int8", "--model", "random:micro", "--out", out
    )
    assert code == 0, err
    info = json.loads((out / QUANT_FILE).read_text())
    assert info["source"] == "random:micro" and info["probe_cosine_min"] > 0.9
    model = load_sentence_transformer(str(out))
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    dynamic = [m for m in model.modules() if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")]
    assert dynamic and not [m for m in linear if type(m) is torch.nn.Linear]  # every Linear is an int8 one
    texts = ["sea ice declines", "solar wind speed"]
    quant, ref = encode(model, texts), encode(load_bi_encoder("random:micro", device="cpu"), texts)
    assert np.abs(quant - ref).max() > 0  # really a different (quantized) computation ...
    assert ((quant * ref).sum(1) > 0.9).all()  # ... of nearly the same embeddings
    # the eval path: a BEIR set made here
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(
        "".join(
            json.dumps({"_id": f"d{i}", "text": t}) + "\n"
            for i, t in enumerate(["sea ice declines fast", "solar wind speed", "dark matter"])
        )
    )
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "arctic sea ice"}) + "\n")
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td0\t1\n")
    code, _, err = invoke(
        monkeypatch, capsys, "eval", "ir", "--model", out, "--data", beir, "--json", tmp_path / "r.json"
    )
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["queries"] == 1


def test_int8_export_bad_input(tmp_path, monkeypatch, capsys):
    code, _, err = invoke(monkeypatch, capsys, "retriever", "export", "--format", "int8", "--out", tmp_path / "x")
    assert code == 2 and "--model" in err and len(err.strip().splitlines()) == 1
    code, _, err = invoke(
        monkeypatch, capsys, "retriever", "export", "--format", "opensearch", "--out", tmp_path / "x.ndjson"
    )
    assert code == 2 and "--index" in err
