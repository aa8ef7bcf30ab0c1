"""INDUSBPE training and fertility: trains on a few self-made lines and loads back with transformers."""

from __future__ import annotations

import json

import pytest

from indus.errors import IndusError
from indus.tokenizer import compare_tokenizers, train_bpe

LINES = [
    "The solar wind carries magnetic fields from the Sun into the heliosphere.",
    "Coronal mass ejections drive geomagnetic storms in the magnetosphere.",
    "Proteins fold into three-dimensional structures that determine their function.",
    "Aerosols scatter sunlight and change the radiative balance of the atmosphere.",
    "Exoplanet transits dim the light of their host stars by a fraction of a percent.",
] * 20


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in LINES), encoding="utf-8")
    return path


def test_trains_and_loads_with_autotokenizer(corpus, tmp_path):
    from transformers import AutoTokenizer

    out = tmp_path / "bpe"
    train_bpe([corpus], vocab_size=400, lowercase=True, out_dir=out, show_progress=False)
    tok = AutoTokenizer.from_pretrained(str(out))
    assert len(tok) == 400
    specials = [tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, tok.mask_token_id]
    assert specials == [0, 1, 2, 3, 4]
    ids = tok("Solar Wind")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert ids == tok("solar wind")["input_ids"], "the uncased tokenizer must lower-case after loading"
    pair = tok("solar", "wind")["input_ids"]
    assert pair.count(tok.eos_token_id) == 3, "RoBERTa pairs are <s> A </s></s> B </s>"
    # <mask> absorbs the space before it, like RoBERTa's
    assert tok.convert_ids_to_tokens(tok("the <mask>")["input_ids"])[-2:] == ["<mask>", "</s>"]
    assert tok.decode(tok("solar wind")["input_ids"], skip_special_tokens=True) == "solar wind"


def test_cased_keeps_case_and_byte_level_covers_any_text(corpus, tmp_path):
    from transformers import AutoTokenizer

    train_bpe([corpus], vocab_size=300, lowercase=False, out_dir=tmp_path / "cased", show_progress=False)
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "cased"))
    assert tok("Solar")["input_ids"] != tok("solar")["input_ids"]
    ids = tok("Ω ≈ 42 µm")["input_ids"]
    assert tok.unk_token_id not in ids and tok.decode(ids, skip_special_tokens=True) == "Ω ≈ 42 µm"


def test_too_small_vocab_is_a_user_error(corpus, tmp_path):
    with pytest.raises(IndusError, match="vocab-size"):
        train_bpe([corpus], vocab_size=100, out_dir=tmp_path / "x")


def test_domain_bpe_is_more_fertile_on_its_domain(corpus, tmp_path):
    train_bpe([corpus], vocab_size=600, lowercase=True, out_dir=tmp_path / "big", show_progress=False)
    train_bpe([corpus], vocab_size=262, lowercase=True, out_dir=tmp_path / "bytes", show_progress=False)
    rows = compare_tokenizers(corpus, [tmp_path / "big", tmp_path / "bytes"])
    words = sum(len(t.split()) for t in LINES)
    assert rows[0].words == rows[1].words == words and rows[0].documents == len(LINES)
    assert rows[0].relative_diff_pct == 0.0
    assert rows[1].tokens > rows[0].tokens and rows[1].relative_diff_pct > 0
    assert rows[1].tokens_per_word == pytest.approx(rows[1].tokens / words)


def test_cli_train_and_compare(corpus, tmp_path):
    from typer.testing import CliRunner

    from indus.cli import app

    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "tokenizer",
            "train",
            "--corpus",
            str(corpus),
            "--vocab-size",
            "350",
            "--lowercase",
            "--out",
            str(tmp_path / "t"),
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        [
            "tokenizer",
            "compare",
            "--text",
            str(corpus),
            "--tokenizer",
            str(tmp_path / "t"),
            "--tokenizer",
            "minilm",
            "--json",
            str(tmp_path / "rows.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r["vocab_size"] for r in rows] == [350, 30522]
