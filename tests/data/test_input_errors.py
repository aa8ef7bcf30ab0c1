"""Each bad-input class of issue 14 ends in one clear line naming the file (and line), exit code 2."""

from __future__ import annotations

import gzip
import json
import math
import shutil
from pathlib import Path

import pytest

from cli_runner import run_cli
from indus.config import build_config, load_config
from indus.data.conll import read_conll
from indus.data.corpus import iter_texts
from indus.data.jsonl import iter_jsonl
from indus.data.text import iter_lines, read_text, split_lines
from indus.errors import DataFormatError, IndusError


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ----------------------------------------------------------------------------------------------- the reader layer


def test_gzip_corrupt_in_the_middle_names_the_line(tmp_path):
    lines = "".join(json.dumps({"text": f"document number {i} " * 8}) + "\n" for i in range(5000)).encode()
    packed = bytearray(gzip.compress(lines, mtime=0))
    for i in range(len(packed) // 2, len(packed) // 2 + 16):
        packed[i] ^= 0x5A
    path = tmp_path / "c.jsonl.gz"
    path.write_bytes(bytes(packed))
    # garbled deflate data either breaks the stream at once or decodes to garbage that the format (or the CRC
    # check at the end) rejects: a line-numbered error in every case
    with pytest.raises(DataFormatError, match="gzip stream is corrupt|expected") as info:
        list(iter_texts(path))
    assert info.value.line is not None and 1 < info.value.line <= 5001
    crc = bytearray(gzip.compress(lines, mtime=0))
    crc[-8] ^= 0xFF  # a wrong CRC: every byte decompresses, the stream is still corrupt
    path.write_bytes(bytes(crc))
    with pytest.raises(DataFormatError, match="gzip stream is corrupt") as info:
        list(iter_texts(path))
    assert info.value.line == 5001
    with pytest.raises(DataFormatError, match="gzip stream is corrupt"):
        read_text(path)


@pytest.mark.parametrize("name", ["corpus.txt", "corpus.jsonl", "scores.csv", "config.yaml"])
def test_non_utf8_names_file_and_line(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"first line\nsecond caf\xe9 line\n")
    with pytest.raises(DataFormatError, match="expected UTF-8 text") as info:
        list(iter_lines(path))
    assert info.value.line == 2 and f"{name}:2:" in str(info.value)
    with pytest.raises(DataFormatError) as whole:
        read_text(path)
    assert whole.value.line == 2


def test_lines_are_counted_as_editors_count_them(tmp_path):
    text = "tok\u2028en\tO\nnext\u0085x\tO\nbad-line-without-tag\n"
    assert split_lines(text) == ["tok\u2028en\tO", "next\u0085x\tO", "bad-line-without-tag"]
    assert text.splitlines() != split_lines(text)  # str.splitlines breaks at U+2028 and U+0085
    path = tmp_path / "train.tsv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read_conll(path)
    assert info.value.line == 3
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"text": "a\u2028b"}\n{"text": "c\u2029d"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        list(iter_jsonl(jsonl))
    assert info.value.line == 3
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("a: 'x\u2028y'\nb: 1\nc: [\n", encoding="utf-8")
    with pytest.raises(IndusError, match=r"c\.yaml:4: invalid YAML"):
        load_config(dict, yaml_file)  # type: ignore[arg-type]


def test_byte_order_marks_are_dropped_everywhere(tmp_path):
    bom = "\ufeff"
    (tmp_path / "train.tsv").write_text(bom + "Aspirin\tB-Chemical\nworks\tO\n", encoding="utf-8")
    assert read_conll(tmp_path / "train.tsv")[0].tokens[0] == "Aspirin"
    (tmp_path / "a.jsonl").write_text(bom + '{"text": "x"}\n', encoding="utf-8")
    assert [o["text"] for _, o in iter_jsonl(tmp_path / "a.jsonl")] == ["x"]
    (tmp_path / "a.txt").write_text(bom + "plain text\n", encoding="utf-8")
    assert list(iter_texts(tmp_path / "a.txt")) == ["plain text"]
    (tmp_path / "s.json").write_text(
        bom
        + json.dumps(
            {
                "data": [
                    {
                        "paragraphs": [
                            {
                                "context": "ab",
                                "qas": [{"id": "1", "question": "q", "answers": [{"text": "b", "answer_start": 1}]}],
                            }
                        ]
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    from indus.data.squad import read_squad

    assert len(read_squad(tmp_path / "s.json")) == 1
    from indus.config import read_yaml

    (tmp_path / "c.yaml").write_text(bom + "lr: 0.1\n", encoding="utf-8")
    assert read_yaml(tmp_path / "c.yaml") == {"lr": 0.1}
    from indus.scaling.scores import read_table

    (tmp_path / "s.csv").write_text(bom + "Model,MMLU\nm1,0.5\n", encoding="utf-8")
    assert list(read_table(tmp_path / "s.csv").columns) == ["Model", "MMLU"]


def test_lone_surrogate_escapes_are_refused(tmp_path, capsys):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "fine \\ud83d\\ude00"}\n{"text": "bad \\ud800 here"}\n')
    with pytest.raises(DataFormatError, match="lone surrogate") as info:
        list(iter_texts(path))
    assert info.value.line == 2
    code, err = run_cli(
        ["tokenizer", "train", "--corpus", str(path), "--vocab-size", "300", "--out", str(tmp_path / "tok")], capsys
    )
    assert code == 2 and "c.jsonl:2" in _one_error_line(err)


# ----------------------------------------------------------------------------------------------- configs


def test_set_value_that_is_not_yaml(capsys):
    with pytest.raises(IndusError, match=r"--set 'lr=\[1,': invalid YAML"):
        from indus.encoder.configs import PretrainConfig

        build_config(PretrainConfig, {}, ["lr=[1,"])
    code, err = run_cli(["pretrain", "--set", "lr=[1,", "--out", "x"], capsys)
    assert code == 2 and "invalid YAML" in _one_error_line(err)


@pytest.mark.parametrize(
    "setting",
    ["lr=nan", "lr=.nan", "lr=.inf", "max_minutes=.inf", "max_minutes=-.inf", "warmup_ratio=NaN", "grad_clip=inf"],
)
def test_nan_and_infinity_are_refused(setting):
    from indus.encoder.configs import PretrainConfig

    with pytest.raises(IndusError, match="expected a finite number"):
        build_config(PretrainConfig, {}, [setting])


def test_nan_in_every_config_dataclass_of_a_pipeline(tmp_path):
    from indus.pipeline.config import PipelineConfig

    path = tmp_path / "run.yaml"
    path.write_text("forecast: {alpha: .nan}\n")
    with pytest.raises(IndusError, match="finite"):
        load_config(PipelineConfig, path)


# ----------------------------------------------------------------------------------------------- data list


def test_data_list_marks_a_bad_file_and_lists_the_rest(tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    (root / "qa" / "broken").mkdir(parents=True)
    (root / "qa" / "broken" / "covid.json").write_bytes(b'{"data": [')
    (root / "classification" / "ok").mkdir(parents=True)
    (root / "classification" / "ok" / "train.jsonl").write_text('{"text": "a", "label": "x"}\n')
    (root / "corpus").mkdir()
    (root / "corpus" / "train.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    (root / "corpus" / "valid.jsonl").write_text('{"text": "a"}\n')
    (root / "scaling").mkdir()
    (root / "scaling" / "scores.csv").write_bytes(b"Model\n\xff\n")
    monkeypatch.setenv("INDUS_DATA", str(root))
    stdout: list[str] = []
    code, err = run_cli(["data", "list"], capsys, stdout)
    assert code == 0, err
    assert "qa/broken" in err and "corpus/corpus (train docs)" in err and "scaling/scaling" in err
    assert err.count("warning:") == 3 and "unreadable" in err
    assert "train: 1" in stdout[0] and "valid docs: 1" in stdout[0]  # the readable files keep their counts


# ----------------------------------------------------------------------------------------------- models


@pytest.mark.parametrize(
    "weights, cut",
    [
        ("model.safetensors", 0),
        ("model.safetensors", 0.5),
        ("model.safetensors", 7),
        ("pytorch_model.bin", 0),
        ("pytorch_model.bin", 0.5),
    ],
)
def test_truncated_or_empty_weights_file(micro_model_dir, tmp_path, capsys, weights, cut):
    from indus.models import resolve_model

    folder = tmp_path / "model"
    shutil.copytree(micro_model_dir, folder)
    if weights == "pytorch_model.bin":
        import torch
        from safetensors.torch import load_file

        torch.save(load_file(folder / "model.safetensors"), folder / weights)
        (folder / "model.safetensors").unlink()
    data = (folder / weights).read_bytes()
    size = int(len(data) * cut) if isinstance(cut, float) else cut
    (folder / weights).write_bytes(data[:size])
    with pytest.raises(IndusError, match="empty|truncated") as info:
        resolve_model(str(folder))
    assert weights in str(info.value)
    for args in (
        ["eval", "ner", "--model", str(folder), "--data", str(tmp_path)],
        [
            "distill",
            "--teacher",
            str(folder),
            "--student-preset",
            "micro",
            "--set",
            "max_steps=1",
            "--out",
            str(tmp_path / "student"),
        ],
    ):
        code, err = run_cli(args, capsys)
        assert code == 2 and weights in _one_error_line(err), args


def test_whole_weights_files_pass(micro_model_dir):
    from indus.models import check_weight_files

    check_weight_files(Path(micro_model_dir))


# ----------------------------------------------------------------------------------------------- SQuAD


def _squad(tmp_path: Path, answers: list[tuple[str, str, int]]) -> Path:
    qas = [
        {"id": qid, "question": "q?", "answers": [{"text": text, "answer_start": start}]}
        for qid, text, start in answers
    ]
    path = tmp_path / "qa.json"
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": "the sun is a star", "qas": qas}]}]}))
    return path


def test_squad_with_no_articles(tmp_path, capsys):
    path = tmp_path / "qa.json"
    path.write_text('{"version": "1", "data": []}')
    code, err = run_cli(["data", "check", str(path)], capsys)
    assert code == 2 and "no articles" in _one_error_line(err) and "qa.json" in err


def test_squad_unlocated_answers_warn_and_none_located_fails(tmp_path, capsys):
    path = _squad(tmp_path, [("q1", "star", 13), ("q2", "moon", 0), ("q3", "planet", 2)])
    code, err = run_cli(["data", "check", str(path)], capsys)
    assert code == 0
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "q2, q3" in warning[0] and "q1" not in warning[0]
    path = _squad(tmp_path, [("q2", "moon", 0), ("q3", "planet", 2)])
    code, err = run_cli(["data", "check", str(path)], capsys)
    assert code == 2 and "none of the 2 answers" in _one_error_line(err) and "q2, q3" in err


# ----------------------------------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize("content", ["", "\n\n   \n", '{"text": ""}\n{"text": "   "}\n'])
def test_tokenizer_refuses_an_empty_or_blank_corpus(tmp_path, capsys, content):
    path = tmp_path / ("c.jsonl" if content.startswith("{") else "c.txt")
    path.write_text(content)
    code, err = run_cli(
        ["tokenizer", "train", "--corpus", str(path), "--vocab-size", "300", "--out", str(tmp_path / "tok")], capsys
    )
    assert code == 2 and "nothing to train a tokenizer on" in _one_error_line(err)
    assert not (tmp_path / "tok").exists()


# ----------------------------------------------------------------------------------------------- scores

SCORES_HEAD = "Model,Model Family,Model Size (B),Pretraining Data Size (T),FLOPs (1E21),MMLU,ARC-C,GSM8K\n"


def test_scores_with_fewer_models_than_pcs(tmp_path, capsys):
    path = tmp_path / "s.csv"
    path.write_text(SCORES_HEAD + "m1,a,1,1,1,0.2,0.3,0.1\nm2,a,2,2,4,0.3,0.4,0.2\n")
    code, err = run_cli(["scaling", "pca", "--scores", str(path)], capsys)
    assert code == 2 and "more than the 2 models" in _one_error_line(err)
    code, err = run_cli(["scaling", "fit", "--scores", str(path), "--target", "GSM8K", "--n-bootstrap", "0"], capsys)
    assert code == 2
    _one_error_line(err)


def test_scores_with_an_empty_benchmark_column(tmp_path, capsys):
    path = tmp_path / "s.csv"
    path.write_text(SCORES_HEAD + "".join(f"m{i},a,{i},{i},{i * i},,0.{i},0.{i}\n" for i in range(1, 6)))
    for args in (
        ["scaling", "pca", "--scores", str(path)],
        ["data", "check", str(path)],
        ["scaling", "fit", "--scores", str(path), "--target", "GSM8K", "--n-bootstrap", "0"],
    ):
        code, err = run_cli(args, capsys)
        assert code == 2 and "'MMLU'" in _one_error_line(err) and "s.csv:1" in err, args


def test_finite_floats_are_kept():
    from indus.encoder.configs import PretrainConfig

    cfg = build_config(PretrainConfig, {}, ["lr=1e-3", "max_minutes=2.5"])
    assert cfg.lr == 1e-3 and math.isclose(cfg.max_minutes, 2.5)
