"""Fuzz-style: every supported input format, made malformed in many ways, fed to the real CLI entry point.

Each variant starts from a small valid dataset written here, breaks one file of it (truncated, garbled bytes,
wrong JSON types, another format's content, corrupt gzip, UTF-16, byte-order marks, U+2028 inside a line...) and
runs ``indus data check`` and the command that reads that format for real. Every run must end with exit code 2 and
exactly one ``error: FILE...`` line on stderr, never a traceback (variants that can stay valid, such as a
truncation that happens to fall on a line end, may also exit 0).
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from cli_runner import run_cli

BOM = "\ufeff".encode()

# ----------------------------------------------------------------------------------------------- valid samples

CONLL = "Aspirin\tB-Chemical\ncauses\tO\nulcers\tB-Disease\n.\tO\n\nIt\tO\nhelps\tO\nfever\tB-Disease\n"
SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "a",
            "paragraphs": [
                {
                    "context": "The sun is a star. It is hot.",
                    "qas": [
                        {
                            "id": "q1",
                            "question": "What is the sun?",
                            "answers": [{"text": "a star", "answer_start": 11}],
                        },
                        {"id": "q2", "question": "Is it hot?", "answers": [{"text": "hot", "answer_start": 25}]},
                    ],
                }
            ],
        },
        {
            "title": "b",
            "paragraphs": [
                {
                    "context": "Water boils at 100 C.",
                    "qas": [
                        {
                            "id": "q3",
                            "question": "When does water boil?",
                            "answers": [{"text": "100 C", "answer_start": 15}],
                        }
                    ],
                }
            ],
        },
    ],
}
BEIR_CORPUS = [
    {"_id": "d1", "title": "Sun", "text": "The sun is a star."},
    {"_id": "d2", "title": "Water", "text": "Water boils at 100 C."},
]
BEIR_QUERIES = [{"_id": "q1", "text": "what is the sun"}, {"_id": "q2", "text": "boiling water"}]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n"
PAIRS = [
    {"anchor": "sun", "positive": "the sun is a star"},
    {"anchor": "water", "positive": "water boils"},
    {"anchor": "ice", "positive": "ice is cold"},
]
CLS = [
    {"text": "a good paper", "label": "pos"},
    {"text": "a bad paper", "label": "neg"},
    {"text": "fine work", "label": "pos"},
]
CORPUS = [
    {"text": "The solar wind is a stream of charged particles."},
    {"text": "Stars fuse hydrogen into helium."},
    {"text": "Galaxies hold billions of stars."},
]
SCORES = "Model,Model Family,Model Size (B),Pretraining Data Size (T),FLOPs (1E21),MMLU,ARC-C,GSM8K\n" + "".join(
    f"m{i},fam{i % 3},{i + 1},{i + 1},{(i + 1) ** 2},{0.3 + i / 50:.3f},{0.4 + i / 60:.3f},{0.1 + i / 40:.3f}\n"
    for i in range(12)
)
PRETRAIN_YAML = "preset: micro\ntokenizer: minilm\ntrain_files: [./nope.jsonl]\nmax_steps: 2\nlr: 1.0e-3\n"


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _ner(root: Path, file: str, data: bytes) -> Path:
    folder = root / "ner"
    folder.mkdir()
    for split in ("train", "dev", "test"):
        (folder / f"{split}.tsv").write_text(CONLL)
    (folder / file).write_bytes(data)
    return folder


# ----------------------------------------------------------------------------------------------- formats


class Format:
    """One input format: its valid bytes, where the broken file goes, and the commands that read it."""

    def __init__(
        self,
        name: str,
        valid: str,
        file: str,
        layout: Callable[[Path, bytes], tuple[Path, Path]],
        commands: Callable[[Path, Path], list[list[str]]],
        wrong_types: list[str],
        gz: bool = False,
        never_valid_truncation: bool = True,
    ) -> None:
        self.name, self.valid, self.file, self.layout, self.commands = name, valid, file, layout, commands
        self.wrong_types, self.gz, self.never_valid_truncation = wrong_types, gz, never_valid_truncation


def _in_folder(sub: str, others: dict[str, str], file: str):
    def layout(root: Path, data: bytes) -> tuple[Path, Path]:
        folder = root / sub
        folder.mkdir(parents=True)
        for name, text in others.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        (folder / file).parent.mkdir(parents=True, exist_ok=True)
        (folder / file).write_bytes(data)
        return folder, folder / file

    return layout


def _single(name: str):
    def layout(root: Path, data: bytes) -> tuple[Path, Path]:
        (root / name).write_bytes(data)
        return root / name, root / name

    return layout


MODEL = ["--model", "random:micro"]
JSON_FORMATS = ("squad", "beir-corpus", "beir-queries", "pairs", "classification", "corpus-jsonl")
FORMATS = [
    Format(
        "conll",
        CONLL,
        "train.tsv",
        _in_folder("ner", {"dev.tsv": CONLL, "test.tsv": CONLL}, "train.tsv"),
        lambda d, f: [
            ["data", "check", str(d)],
            ["data", "check", str(f), "--format", "ner"],
            ["eval", "ner", *MODEL, "--data", str(d)],
        ],
        ["Aspirin\n", "Aspirin\tB-Chemical\tX\ncauses\tO\n", "Aspirin\tZ-Chem\n", "\tB-Chemical\n"],
        never_valid_truncation=False,
    ),
    Format(
        "squad",
        json.dumps(SQUAD, indent=1),
        "covid.json",
        _single("covid.json"),
        lambda d, f: [["data", "check", str(f)], ["eval", "qa", *MODEL, "--data", str(f)]],
        [
            '{"data": {}}',
            '{"data": []}',
            "[1, 2]",
            '{"data": [{"paragraphs": [{"context": 5, "qas": []}]}]}',
            '{"data": [{"paragraphs": [{"context": "x", "qas": [{"id": true, "question": "q"}]}]}]}',
            '{"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "q", "question": "q", '
            '"answers": [{"text": "zzz", "answer_start": 0}]}]}]}]}',
            '{"data": [{"paragraphs": []}]}',
            '"just a string"',
        ],
    ),
    Format(
        "beir-corpus",
        _jsonl(BEIR_CORPUS),
        "corpus.jsonl",
        _in_folder("ir", {"queries.jsonl": _jsonl(BEIR_QUERIES), "qrels/test.tsv": QRELS}, "corpus.jsonl"),
        lambda d, f: [["data", "check", str(d)], ["eval", "ir", "--model", "bm25", "--data", str(d)]],
        [
            '{"_id": ["d1"], "text": "x"}\n',
            '{"_id": "d1", "text": 7}\n',
            '{"_id": "d1"}\n',
            "[]\n",
            '{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n',
        ],
        gz=True,
    ),
    Format(
        "beir-queries",
        _jsonl(BEIR_QUERIES),
        "queries.jsonl",
        _in_folder("ir", {"corpus.jsonl": _jsonl(BEIR_CORPUS), "qrels/test.tsv": QRELS}, "queries.jsonl"),
        lambda d, f: [["data", "check", str(d)], ["eval", "ir", "--model", "bm25", "--data", str(d)]],
        ['{"_id": "q1", "text": ""}\n', '{"_id": null, "text": "x"}\n', '{"text": "x"}\n', "1\n"],
        gz=True,
    ),
    Format(
        "beir-qrels",
        QRELS,
        "qrels/test.tsv",
        _in_folder(
            "ir", {"corpus.jsonl": _jsonl(BEIR_CORPUS), "queries.jsonl": _jsonl(BEIR_QUERIES)}, "qrels/test.tsv"
        ),
        lambda d, f: [["data", "check", str(d)], ["eval", "ir", "--model", "bm25", "--data", str(d)]],
        [
            "q1\td1\t1\n",
            "query-id\tcorpus-id\tscore\nq1\td1\n",
            "query-id\tcorpus-id\tscore\nq9\td1\t1\n",
            "query-id\tcorpus-id\tscore\nq1\td1\thigh\n",
            "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t2\n",
            "query-id\tcorpus-id\tscore\n",
        ],
        never_valid_truncation=False,
    ),
    Format(
        "pairs",
        _jsonl(PAIRS),
        "pairs.jsonl",
        _single("pairs.jsonl"),
        lambda d, f: [
            ["data", "check", str(f)],
            ["retriever", "train", *MODEL, "--pairs", str(f), "--out", str(f.parent / "run"), "--set", "max_steps=1"],
        ],
        [
            '{"anchor": 1, "positive": "x"}\n',
            '{"anchor": "a"}\n',
            '{"anchor": "a", "positive": " "}\n',
            '{"anchor": "a", "positive": "b", "negative": []}\n',
        ],
        gz=True,
    ),
    Format(
        "classification",
        _jsonl(CLS),
        "train.jsonl",
        _in_folder("cls", {"dev.jsonl": _jsonl(CLS), "test.jsonl": _jsonl(CLS)}, "train.jsonl"),
        lambda d, f: [["data", "check", str(d)], ["eval", "cls", *MODEL, "--data", str(d)]],
        [
            '{"text": "a", "label": null}\n',
            '{"text": "a", "label": true}\n',
            '{"text": 3, "label": "x"}\n',
            '{"text": "a", "label": ["x"]}\n',
        ],
        gz=True,
    ),
    Format(
        "corpus-jsonl",
        _jsonl(CORPUS),
        "train.jsonl",
        _in_folder("corpus", {"valid.jsonl": _jsonl(CORPUS)}, "train.jsonl"),
        lambda d, f: [
            ["data", "check", str(d), "--format", "corpus"],
            ["tokenizer", "train", "--corpus", str(d), "--vocab-size", "300", "--out", str(d.parent / "tok")],
        ],
        ['{"text": 5}\n', '{"text": ""}\n{"text": "  "}\n', '{"title": "x"}\n', '["text"]\n'],
        gz=True,
    ),
    Format(
        "corpus-text",
        "The solar wind.\nStars fuse hydrogen.\n",
        "train.txt",
        _in_folder("corpus", {"valid.txt": "Galaxies.\n"}, "train.txt"),
        lambda d, f: [
            ["data", "check", str(d), "--format", "corpus"],
            ["tokenizer", "train", "--corpus", str(d), "--vocab-size", "300", "--out", str(d.parent / "tok")],
        ],
        ["\n\n   \n", ""],
        gz=True,
        never_valid_truncation=False,
    ),
    Format(
        "scores",
        SCORES,
        "scores.csv",
        _single("scores.csv"),
        lambda d, f: [
            ["data", "check", str(f)],
            ["scaling", "pca", "--scores", str(f)],
            ["scaling", "fit", "--scores", str(f), "--target", "GSM8K", "--n-bootstrap", "0"],
        ],
        [
            "Model,MMLU\nm1,0.5\nm1,0.6\n",
            "Model,MMLU,ARC-C\nm1,0.5\n",
            "Model,MMLU\nm1,abc\n",
            "Model,MMLU\nm1,inf\n",
            "Model,MMLU\nm1,1.5\n",
            "Model,MMLU,GSM8K\nm1,,0.2\nm2,,0.3\nm3,,0.1\n",
            "MMLU,ARC-C\n0.1,0.2\n",
            'Model,MMLU\n"m1,0.5\n',
        ],
        never_valid_truncation=False,
    ),
    Format(
        "yaml",
        PRETRAIN_YAML,
        "pretrain.yaml",
        _single("pretrain.yaml"),
        lambda d, f: [
            ["pretrain", "--config", str(f), "--out", str(f.parent / "run")],
            ["run", str(f), "--out", str(f.parent / "pipe")],
            ["retriever", "train", "--config", str(f), "--out", str(f.parent / "ret")],
            ["eval", "suite", *MODEL, "--suite", str(f)],
        ],
        [
            "lr: .nan\n",
            "lr: .inf\nmax_steps: 2\n",
            "max_steps: -.inf\n",
            "[1, 2]\n",
            "lr: [1\n",
            "preset: micro\n\tlr: 1\n",
            "nope: 1\n",
            "lr: abc\n",
            "max_steps: 1.5\n",
            "seed: {a: 1}\n",
            "a: \x07\n",
            "[" * 1500 + "\n",
        ],
        never_valid_truncation=False,
    ),
]


# ----------------------------------------------------------------------------------------------- variants


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def variants(fmt: Format) -> list[tuple[str, bytes, str | None, bool]]:
    """``(label, bytes, file-name suffix to add, must_fail)`` for one format."""
    valid = fmt.valid.encode()
    rng = random.Random(fmt.name)
    mid = len(valid) // 2
    line_start = valid.rfind(b"\n", 0, mid) + 1
    out: list[tuple[str, bytes, str | None, bool]] = [
        ("empty", b"", None, fmt.name not in ("yaml",)),
        ("bom-only", BOM, None, fmt.name not in ("yaml",)),
        ("truncated-half", valid[:mid], None, fmt.never_valid_truncation),
        ("truncated-tail", valid[:-3], None, fmt.never_valid_truncation),
        ("invalid-utf8", valid[:line_start] + b"\xff\xfe\xfa" + valid[line_start:], None, True),
        ("latin1", valid[:line_start] + "caf\u00e9 ".encode("latin-1") + valid[line_start:], None, True),
        ("utf16", fmt.valid.encode("utf-16"), None, True),
        ("binary", bytes(rng.randrange(256) for _ in range(300)), None, True),
        ("nul-bytes", valid[:mid] + b"\x00" * 20 + valid[mid:], None, fmt.name != "corpus-text"),
        ("gzip-misnamed", _gzip(valid), None, True),
        (
            "garbled-line",
            valid[:line_start] + b'}{ ][ ,,\t\t" \\\n' + valid[line_start:],
            None,
            fmt.name not in ("corpus-text", "yaml"),
        ),
        ("deep-nesting", b"[" * 100_000 + b"\n", None, fmt.name != "corpus-text"),
        (
            "lone-surrogate",  # a JSON escape of half a surrogate pair, or its (invalid) UTF-8 bytes elsewhere
            valid.replace(b"e", b"\\ud800", 1) if fmt.name in JSON_FORMATS else b"ok\n\xed\xa0\x80\n",
            None,
            True,
        ),
    ]
    out += [(f"wrong-type-{i}", text.encode(), None, True) for i, text in enumerate(fmt.wrong_types)]
    other = CORPUS if fmt.name != "corpus-jsonl" else PAIRS
    if fmt.name not in ("corpus-text",):
        out.append(
            ("other-format", (SCORES if fmt.name != "scores" else _jsonl(other)).encode(), None, fmt.name != "yaml")
        )
    if fmt.gz:
        packed = _gzip(valid * 200)
        flipped = bytearray(packed)
        for i in range(len(flipped) // 2, len(flipped) // 2 + 8):
            flipped[i] ^= 0xFF
        out += [
            ("gzip-corrupt-middle", bytes(flipped), ".gz", True),
            ("gzip-truncated", packed[: len(packed) * 2 // 3], ".gz", True),
            ("gzip-not-gzip", valid, ".gz", True),
            ("gzip-invalid-utf8", _gzip(valid + b"\xc3\x28\n"), ".gz", True),
        ]
    return out


def _cases() -> list[tuple[Format, str, bytes, str | None, bool]]:
    return [(fmt, *v) for fmt in FORMATS for v in variants(fmt)]


CASES = _cases()


@pytest.mark.parametrize("fmt, label, data, suffix, must_fail", CASES, ids=[f"{c[0].name}-{c[1]}" for c in CASES])
def test_malformed_input_is_one_line_exit_2(tmp_path, monkeypatch, capsys, fmt, label, data, suffix, must_fail):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INDUS_DATA", raising=False)
    target, broken = fmt.layout(tmp_path, data)
    if suffix:
        renamed = broken.with_name(broken.name + suffix)
        broken.rename(renamed)
        target, broken = (renamed if target == broken else target), renamed
    for args in fmt.commands(target, broken):
        code, err = run_cli(args, capsys)  # an unexpected exception propagates: the test fails with its traceback
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
        if code == 0 and not must_fail:
            break  # this variant stayed valid (data check comes first): no need to train on it
        assert code == 2, f"{' '.join(args)} -> exit {code}\n{err}"
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{' '.join(args)}:\n{err}"
        assert "Traceback" not in err
