from __future__ import annotations

import json

import pytest
import torch

from indus.data.conll import Sentence, label_list, read_conll
from indus.errors import IndusError
from indus.evaluation import evaluate, get_evaluator
from indus.evaluation.ner import IGNORE, NEREvaluator, encode_sentences, ner_metrics, predict_tags, word_tokenizer
from indus.models import load_tokenizer

TRAIN = """Selegiline\tB-Chemical
-\tO
induced\tO
postural\tB-Disease
hypotension\tI-Disease

Famotidine\tB-Chemical
is\tO
a\tO
histamine\tB-Chemical
antagonist\tO

The\tO
patient\tO
had\tO
seizures\tB-Disease
.\tO
"""
TEST = """Lithium\tB-Chemical
caused\tO
renal\tB-Disease
failure\tI-Disease

No\tO
seizures\tB-Disease
were\tO
seen\tO
"""


@pytest.fixture()
def ner_dir(tmp_path):
    d = tmp_path / "toy-ner"
    d.mkdir()
    (d / "train.tsv").write_text((TRAIN + "\n") * 3)
    (d / "test.tsv").write_text(TEST)
    return d


def sentence(tokens, tags):
    return Sentence(tuple(tokens), tuple(tags))


# ----------------------------------------------------------------------------------------------- metrics


def test_perfect_prediction_scores_one():
    gold = [["B-X", "I-X", "O", "B-Y"], ["O", "B-Y", "I-Y"]]
    scores = ner_metrics(gold, gold)
    assert scores["f1"] == scores["precision"] == scores["recall"] == 1.0
    assert scores["per_type"] == {
        "X": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
        "Y": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2},
    }


def test_strict_mode_by_hand():
    gold = [["B-X", "I-X", "O", "B-Y", "O", "B-X"]]
    # X1: an I- without its B- is no entity in strict IOB2 (the lenient conlleval reading would accept it);
    # Y: right; X2: wrong type (predicted Y).
    pred = [["I-X", "I-X", "O", "B-Y", "O", "B-Y"]]
    scores = ner_metrics(gold, pred)
    assert scores["precision"] == pytest.approx(1 / 2)  # 2 predicted entities (Y, Y), 1 right
    assert scores["recall"] == pytest.approx(1 / 3)  # 3 gold entities
    assert scores["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert scores["per_type"]["X"]["f1"] == 0.0 and scores["per_type"]["X"]["support"] == 2
    from seqeval.metrics import f1_score

    assert f1_score(gold, pred) > scores["f1"]  # the default (conlleval) mode is more lenient
    # a boundary error scores nothing for that entity
    assert ner_metrics([["B-X", "I-X"]], [["B-X", "O"]])["f1"] == 0.0


# ------------------------------------------------------------------------------------- subword alignment


def test_first_subword_labels_wordpiece():
    tok = word_tokenizer(load_tokenizer("minilm"))
    labels = label_list(["Chemical", "Disease"])
    label2id = {label: i for i, label in enumerate(labels)}
    s = sentence(["Selegiline", "-", "induced", "hypotension"], ["B-Chemical", "O", "O", "B-Disease"])
    (w,), stats = encode_sentences(tok, [s], label2id, max_length=64)
    tokens = tok.convert_ids_to_tokens(w.input_ids)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    firsts = [i for i, label in enumerate(w.labels) if label != IGNORE]
    assert [tokens[i] for i in firsts] == ["se", "-", "induced", "h"]  # selegiline = se ##leg ##ili ##ne
    assert [labels[w.labels[i]] for i in firsts] == list(s.tags)
    assert [w.word_index[i] for i in firsts] == [0, 1, 2, 3]
    assert all(w.word_index[i] == -1 for i in range(len(tokens)) if i not in firsts)
    assert stats == {"sentences_split": 0, "words_truncated": 0, "words_without_subwords": 0}


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory):
    """A tiny INDUSBPE-style byte-level BPE (no prefix space, as `indus tokenizer train` writes it)."""
    from indus.tokenizer.train import build_bpe_tokenizer, wrap_tokenizer

    texts = ["the patient had renal failure and seizures after lithium"] * 50 + ["renal seizures the"] * 20
    out = tmp_path_factory.mktemp("bpe")
    wrap_tokenizer(build_bpe_tokenizer(iter(texts), 300, min_frequency=1)).save_pretrained(out)
    return out


def test_byte_level_bpe_gets_a_prefix_space(bpe_dir):
    from transformers import AutoTokenizer

    words = ["renal", "failure"]
    plain = AutoTokenizer.from_pretrained(str(bpe_dir))
    glued = plain.convert_ids_to_tokens(plain(words, is_split_into_words=True)["input_ids"])
    assert not any(t.startswith("Ġ") for t in glued)  # the failure mode: words encoded as if glued together
    tok = word_tokenizer(AutoTokenizer.from_pretrained(str(bpe_dir)))
    enc = tok(words, is_split_into_words=True)
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    in_text = tok.convert_ids_to_tokens(tok(" renal failure")["input_ids"])
    assert tokens == in_text  # each word encoded as inside running text
    assert tokens[0] == "<s>" and tokens[-1] == "</s>"
    firsts = {}
    for i, w in enumerate(enc.word_ids()):
        if w is not None:
            firsts.setdefault(w, tokens[i])
    assert all(t.startswith("Ġ") for t in firsts.values())


def test_long_sentences_are_split_not_truncated():
    tok = word_tokenizer(load_tokenizer("minilm"))
    words = [f"w{i}" for i in range(30)] + ["Selegilinehypotensionfamotidine"]
    tags = ["B-X" if i % 5 == 0 else "O" for i in range(30)] + ["B-X"]
    label2id = {label: i for i, label in enumerate(label_list(["X"]))}
    windows, stats = encode_sentences(tok, [sentence(words, tags)], label2id, max_length=12)
    assert stats["sentences_split"] == 1 and len(windows) > 3
    assert all(len(w.input_ids) <= 12 for w in windows)
    covered = [i for w in windows for i in w.word_index if i >= 0]
    assert covered == list(range(len(words)))  # every word labelled exactly once, in order
    long_word = tok.tokenize(words[-1])
    assert len(long_word) > 10 and stats["words_truncated"] == 1


class Oracle(torch.nn.Module):
    """Predicts, for every first subword, the label its token id carried in training (ids are unique here)."""

    def __init__(self, windows, n_labels):
        super().__init__()
        self.table = torch.zeros(30522, n_labels)
        for w in windows:
            for tid, label in zip(w.input_ids, w.labels, strict=True):
                if label != IGNORE:
                    self.table[tid, label] = 1.0

    def forward(self, input_ids, attention_mask):
        return type("Out", (), {"logits": self.table[input_ids]})()  # (B, L, C)


def test_predictions_are_reassembled_across_windows():
    tok = word_tokenizer(load_tokenizer("minilm"))
    labels = label_list(["X", "Y"])
    label2id = {label: i for i, label in enumerate(labels)}
    vocab = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]
    tags = ["B-X", "I-X", "O", "B-Y", "I-Y", "I-Y", "O", "O", "B-X", "O", "B-Y", "I-Y"]
    sentences = [sentence(vocab, tags), sentence(vocab[:3], tags[:3])]
    windows, stats = encode_sentences(tok, sentences, label2id, max_length=6)
    assert stats["sentences_split"] == 1
    pred = predict_tags(
        Oracle(windows, len(labels)), windows, [len(s) for s in sentences], dict(enumerate(labels)), batch_size=2
    )
    assert pred == [list(s.tags) for s in sentences]
    assert ner_metrics([list(s.tags) for s in sentences], pred)["f1"] == 1.0


# -------------------------------------------------------------------------------------------- evaluator


def test_evaluator_end_to_end(micro_model_dir, ner_dir, tmp_path):
    pred_path = tmp_path / "pred.conll"
    result = evaluate(
        "ner",
        str(micro_model_dir),
        ner_dir,
        seeds=2,
        epochs=1,
        batch_size=4,
        lr=1e-3,
        max_length=12,
        progress=False,
        predictions_path=pred_path,
    )
    assert result["task"] == "ner" and result["primary_metric"] == "f1"
    for key in ("f1", "f1_std", "precision", "recall", "precision_std", "recall_std"):
        assert 0.0 <= result[key] <= 1.0
    assert set(result["per_type"]) == {"Chemical", "Disease"}
    assert result["seeds"] == 2 and len(result["per_seed"]) == 2
    assert [r["seed"] for r in result["per_seed"]] == [0, 1]
    assert result["train_sentences"] == 9 and result["eval_sentences"] == 2 and result["eval_entities"] == 3
    assert result["train_sentences_split"] == 3  # "Selegiline - induced postural hypotension": 15 subwords > 12
    assert result["train_windows"] == 12 and result["eval_sentences_split"] == 0
    assert result["split"] == "test" and result["max_length"] == 12 and result["wall_s"] > 0
    assert result["settings"]["epochs"] == 1 and result["scheme"] == "IOB2"
    json.dumps(result.to_json())  # JSON-able
    for seed in (0, 1):
        written = read_conll(tmp_path / f"pred.seed{seed}.conll")
        assert [s.tokens for s in written] == [
            ("Lithium", "caused", "renal", "failure"),
            ("No", "seizures", "were", "seen"),
        ]


def test_seeds_change_the_run_and_repeat_exactly(micro_model_dir, ner_dir):
    ev = NEREvaluator(seeds=2, epochs=1, batch_size=4, lr=1e-3, max_steps=2, max_eval_sentences=1, progress=False)
    a, b = ev.evaluate(str(micro_model_dir), ner_dir), ev.evaluate(str(micro_model_dir), ner_dir)
    assert [r["final_loss"] for r in a["per_seed"]] == [r["final_loss"] for r in b["per_seed"]]
    assert a["per_seed"][0]["final_loss"] != a["per_seed"][1]["final_loss"]


def test_bpe_model_end_to_end(bpe_dir, tmp_path):
    from transformers import AutoTokenizer, RobertaForTokenClassification

    from indus.encoder.presets import config_for_tokenizer

    tok = AutoTokenizer.from_pretrained(str(bpe_dir))
    model_dir = tmp_path / "bpe-model"
    # saved with a 2-label head; the evaluator needs 3 (O, B-D, I-D) and must re-initialise it
    RobertaForTokenClassification(config_for_tokenizer("micro", tok, max_length=64)).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    d = tmp_path / "ner"
    d.mkdir()
    (d / "train.tsv").write_text("the\tO\npatient\tO\nhad\tO\nrenal\tB-D\nfailure\tI-D\n\nseizures\tB-D\n")
    (d / "test.tsv").write_text("renal\tB-D\nfailure\tI-D\n")
    result = NEREvaluator(seeds=1, epochs=1, batch_size=2, progress=False).evaluate(str(model_dir), d)
    assert result["words_without_subwords"] == 0 and result["eval_entities"] == 1


def test_bf16_run(micro_model_dir, ner_dir):
    result = NEREvaluator(seeds=1, max_steps=2, bf16=True, progress=False).evaluate(str(micro_model_dir), ner_dir)
    assert result["settings"]["bf16"] is True and 0.0 <= result["f1"] <= 1.0


def test_budgets_and_subsets_are_fixed(micro_model_dir, ner_dir):
    result = NEREvaluator(
        seeds=1, epochs=1, max_train_sentences=4, max_eval_sentences=1, progress=False, split="test"
    ).evaluate(str(micro_model_dir), ner_dir)
    # lr auto (the default), no dev split: 1 of the 4 drawn sentences is held out to choose the rate on
    assert (result["train_sentences"], result["train_sentences_total"]) == (3, 9)
    assert result["lr_choice"]["dev_examples"] == 1
    assert (result["eval_sentences"], result["eval_sentences_total"]) == (1, 2)


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"seeds": 0}, "seeds must be >= 1"),
        ({"epochs": 0}, "epochs must be > 0"),
        ({"max_train_sentences": 0}, "max_train_sentences must be >= 1"),
        ({"no_such_setting": 1}, "bad evaluation setting"),
    ],
)
def test_bad_settings(settings, match):
    with pytest.raises(IndusError, match=match):
        get_evaluator("ner", **settings)


def test_missing_split_and_data(micro_model_dir, ner_dir, tmp_path):
    with pytest.raises(IndusError, match="no 'dev' split"):
        NEREvaluator(split="dev", progress=False).evaluate(str(micro_model_dir), ner_dir)
    with pytest.raises(IndusError, match="no such file or directory"):
        NEREvaluator(progress=False).evaluate(str(micro_model_dir), tmp_path / "missing")
