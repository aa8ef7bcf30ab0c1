"""Held-out text never enters training, the dataset name ``corpus`` works everywhere a corpus is taken, and dataset
names never resolve outside the data root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_runner import run_cli
from indus.data.corpus import corpus_files, folder_splits, is_held_out, iter_texts, split_corpus
from indus.data.registry import resolve_dataset
from indus.errors import IndusError

TRAIN_WORD, VALID_WORD = "trainonlyword", "heldoutonlyword"


def _docs(word: str, n: int = 60) -> str:
    return "".join(json.dumps({"text": f"{word} {word} common text number {i}"}) + "\n" for i in range(n))


@pytest.fixture()
def root(tmp_path, monkeypatch) -> Path:
    """A data root whose corpus has a word only in train and a word only in valid."""
    data = tmp_path / "data"
    (data / "corpus").mkdir(parents=True)
    (data / "corpus" / "train.jsonl").write_text(_docs(TRAIN_WORD))
    (data / "corpus" / "valid.jsonl").write_text(_docs(VALID_WORD))
    (data / "ner" / "tiny").mkdir(parents=True)
    (data / "ner" / "tiny" / "train.tsv").write_text("Sun\tB-X\nis\tO\n")
    monkeypatch.setenv("INDUS_DATA", str(data))
    monkeypatch.chdir(tmp_path)
    return data


# ----------------------------------------------------------------------------------------------- held-out split


def test_folder_split_rules(tmp_path):
    for name in ("train.jsonl", "part-0001.jsonl.gz", "valid.jsonl.gz", "shard-dev.txt", "test.txt", "notes.md"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "s1.jsonl").write_bytes(b"")
    (tmp_path / "validation").mkdir()
    (tmp_path / "validation" / "v1.jsonl").write_bytes(b"")
    parts = folder_splits(tmp_path)
    assert [p.name for p in parts["train"]] == ["part-0001.jsonl.gz", "train.jsonl", "s1.jsonl"]
    assert sorted(p.name for p in parts["heldout"]) == ["shard-dev.txt", "test.txt", "v1.jsonl", "valid.jsonl.gz"]
    assert is_held_out("corpus-validation.jsonl") and not is_held_out("devonian-fossils.txt")


def test_a_folder_means_its_training_files(root):
    texts = list(iter_texts(root / "corpus"))
    assert texts and all(TRAIN_WORD in t for t in texts)
    held = list(iter_texts(root / "corpus", split="heldout"))
    assert held and all(VALID_WORD in t for t in held)
    only_valid = root / "only-valid"
    only_valid.mkdir()
    (only_valid / "valid.jsonl").write_text(_docs(VALID_WORD))
    with pytest.raises(IndusError, match="only held-out ones"):
        corpus_files(only_valid, "train")


def test_the_same_file_for_training_and_held_out_is_refused(root):
    train, held = split_corpus(["corpus"], ["corpus"])
    assert [p.name for p in train] == ["train.jsonl"] and [p.name for p in held] == ["valid.jsonl"]
    with pytest.raises(IndusError, match="training and as held-out"):
        split_corpus(["corpus"], [str(root / "corpus" / "train.jsonl")])
    with pytest.raises(IndusError, match="training and as held-out"):
        split_corpus([str(root / "corpus" / "valid.jsonl")], ["corpus"])


def test_tokenizer_train_by_name_never_sees_held_out_text(root, tmp_path, capsys):
    code, err = run_cli(
        ["tokenizer", "train", "--corpus", "corpus", "--vocab-size", "320", "--out", str(tmp_path / "tok")], capsys
    )
    assert code == 0, err
    vocab = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())["model"]["vocab"]
    assert TRAIN_WORD in vocab  # frequent enough to become one token
    assert not any(VALID_WORD[:6] in token for token in vocab)


def test_tokenizer_compare_by_name_measures_held_out_text(root, tmp_path, capsys):
    from indus.tokenizer.fertility import compare_tokenizers

    run_cli(["tokenizer", "train", "--corpus", "corpus", "--vocab-size", "320", "--out", str(tmp_path / "tok")], capsys)
    rows = compare_tokenizers("corpus", [str(tmp_path / "tok")])
    held_words = sum(len(t.split()) for t in iter_texts(root / "corpus", split="heldout"))
    assert rows[0].words == held_words
    code, err = run_cli(["tokenizer", "compare", "--text", "corpus", "--tokenizer", str(tmp_path / "tok")], capsys)
    assert code == 0, err


def test_data_check_by_name_lists_both_splits(root, capsys):
    code, err = run_cli(["data", "check", "corpus", "--json", "check.json"], capsys)
    assert code == 0, err
    files = json.loads(Path("check.json").read_text())["files"]
    assert files["train.jsonl"]["split"] == "train" and files["valid.jsonl"]["split"] == "held-out"


def test_pipeline_refuses_the_same_file_twice(root, tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("corpus: {train: corpus/train.jsonl, valid: corpus/train.jsonl}\n")
    code, err = run_cli(["run", str(cfg), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "training and as held-out" in err and len(err.strip().splitlines()) == 1


def test_pipeline_default_corpus_is_the_named_dataset():
    from indus.pipeline.config import CorpusSection

    assert CorpusSection().train == "corpus" and CorpusSection().valid == "corpus"


@pytest.mark.parametrize(
    "config",
    sorted((Path(__file__).resolve().parents[2] / "configs").glob("*/*.yaml")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_shipped_configs_name_data_by_dataset_name(config):
    settings = [line.split("#")[0] for line in config.read_text().splitlines()]
    assert not any("shared/data" in line for line in settings)
    for line in settings:
        key, _, value = line.strip().partition(":")
        if key in ("train_files", "valid_files") or (key in ("train", "valid") and line.startswith("  ")):
            assert value.strip() in ("[corpus]", "corpus"), line


# ----------------------------------------------------------------------------------------------- names stay inside


def test_a_name_never_leaves_the_data_root(root):
    with pytest.raises(IndusError, match="may not contain '..'"):
        resolve_dataset("ner/../../../../etc/passwd")
    with pytest.raises(IndusError, match="may not contain '..'"):
        resolve_dataset("corpus/../../data/corpus", from_config=True)
    assert resolve_dataset("ner/tiny") == root / "ner" / "tiny"
    assert resolve_dataset("tiny", kind="ner") == root / "ner" / "tiny"


def test_explicit_paths_still_work(root, tmp_path):
    outside = tmp_path / "mine.jsonl"
    outside.write_text(_docs("x", 2))
    assert resolve_dataset(str(outside)) == outside  # an absolute path, command line or config
    assert resolve_dataset(str(outside), from_config=True) == outside
    assert resolve_dataset("./mine.jsonl", from_config=True) == Path("./mine.jsonl")
    assert resolve_dataset("mine.jsonl") == Path("mine.jsonl")  # typed on the command line: an existing path


def test_a_config_name_resolves_inside_the_root_not_the_working_directory(root, tmp_path):
    (tmp_path / "corpus").mkdir()  # a folder in the working directory with the dataset's name
    (tmp_path / "corpus" / "train.jsonl").write_text(_docs("decoy", 2))
    assert resolve_dataset("corpus", kind="corpus", from_config=True) == root / "corpus"
    with pytest.raises(IndusError, match=r"give a path \(\./mine.jsonl\)"):
        (tmp_path / "mine.jsonl").write_text("{}")
        resolve_dataset("mine.jsonl", from_config=True)


def test_cli_refuses_traversal_in_a_name(root, capsys):
    code, err = run_cli(["data", "check", "ner/../../../../etc/passwd"], capsys)
    assert code == 2 and "may not contain '..'" in err and "root:" not in err


def test_a_suite_cannot_read_outside_the_root(root, tmp_path, capsys):
    secret = tmp_path / "secret"
    (secret / "ner").mkdir(parents=True)
    (secret / "ner" / "train.tsv").write_text("a\tO\n")
    suite = tmp_path / "suite.yaml"
    suite.write_text("tasks:\n  - {task: ner, data: ner/../../secret/ner}\n")
    code, err = run_cli(["eval", "suite", "--model", "random:micro", "--suite", str(suite)], capsys)
    assert code == 2 and "may not contain '..'" in err


def test_pretrain_config_names_resolve_inside_the_root(root, tmp_path):
    from indus.encoder.data import corpus_split

    train, held = corpus_split(["corpus"], ["corpus"])
    assert train == [root / "corpus" / "train.jsonl"] and held == [root / "corpus" / "valid.jsonl"]
    with pytest.raises(IndusError, match="may not contain"):
        corpus_split(["corpus/../corpus"], [])
