from __future__ import annotations

import importlib.util
import json

import pytest

from indus.errors import IndusError
from indus.evaluation.suite import SUITES_DIR, load_suite, parse_suite, run_suite, suite_path

NER = "a\tB-X\nb\tO\nc\tI-X\n\nd\tO\ne\tB-X\n\n"
CLS = "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in [("x y", "p"), ("z", "q"), ("x", "p")])


@pytest.fixture()
def root(tmp_path):
    (tmp_path / "ner" / "toy").mkdir(parents=True)
    (tmp_path / "ner" / "toy" / "train.tsv").write_text(NER * 2)
    (tmp_path / "ner" / "toy" / "test.tsv").write_text(NER)
    (tmp_path / "classification" / "tc").mkdir(parents=True)
    for split in ("train", "test"):
        (tmp_path / "classification" / "tc" / f"{split}.jsonl").write_text(CLS)
    return tmp_path


def write_suite(tmp_path, text):
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def test_parse_and_coerce_yaml_types():
    # YAML reads 5e-5 as a string and 2 as an int: both are coerced to the evaluator's float fields
    name, tasks = parse_suite(
        {"name": "s", "tasks": [{"task": "ner", "data": "bc5cdr", "settings": {"lr": "5e-5", "epochs": 2, "seeds": 1}}]}
    )
    assert name == "s" and tasks[0].settings == {"lr": 5e-5, "epochs": 2.0, "seeds": 1}
    assert isinstance(tasks[0].settings["epochs"], float)
    _, tasks = parse_suite([{"task": "cls", "data": "x", "model": "bm25", "name": "shown"}])  # a bare list works
    assert tasks[0].model == "bm25" and tasks[0].label == "shown" and tasks[0].settings == {}


@pytest.mark.parametrize(
    "text, match",
    [
        (
            "tasks:\n  - {task: ner, data: a}\n  - {task: pos, data: b}\n",
            r"suite\.yaml: tasks\[1\] \(pos b\): unknown task 'pos'",
        ),
        ("tasks:\n  - {task: ner, data: a, budget: 3}\n", r"tasks\[0\]: unknown key\(s\) budget"),
        (
            "tasks:\n  - {task: ner, data: a, settings: {max_train: 3}}\n",
            r"tasks\[0\] \(ner a\)\.settings: unknown setting\(s\) max_train",
        ),
        (
            "tasks:\n  - {task: ner, data: a, settings: {seeds: many}}\n",
            r"tasks\[0\] \(ner a\)\.settings\.seeds: expected an integer",
        ),
        ("tasks:\n  - {task: cls, data: a, settings: {seeds: 0}}\n", r"tasks\[0\] \(cls a\): cls: seeds must be >= 1"),
        ("tasks:\n  - {task: ner}\n", r"tasks\[0\]: 'data' must be a non-empty string"),
        ("tasks: []\n", "expected a non-empty list of tasks"),
        ("tasks:\n  - [ner, a]\n", r"tasks\[0\]: expected a mapping"),
        ("name: x\nextra: 1\ntasks: []\n", r"unknown key\(s\) extra"),
        ("tasks: [\n", r"suite\.yaml:\d+: invalid YAML"),
    ],
)
def test_bad_suites_name_file_and_entry(tmp_path, text, match):
    path = write_suite(tmp_path, text)
    with pytest.raises(IndusError, match=match) as err:
        load_suite(path)
    assert str(path) in str(err.value)


def test_suite_lookup():
    assert suite_path(None) == SUITES_DIR / "default.yaml"
    assert suite_path("default") == SUITES_DIR / "default.yaml"
    with pytest.raises(IndusError, match="suite file not found"):
        suite_path("nope")


def test_default_suite_is_valid():
    for module in ("indus.evaluation.qa", "indus.evaluation.ir"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} not available yet")
    suite = load_suite()
    assert [t.task for t in suite.tasks] == ["ner", "ner", "qa", "ir", "cls"]


def test_missing_data_fails_before_anything_runs(tmp_path, root):
    path = write_suite(
        tmp_path, "tasks:\n  - {task: ner, data: toy, settings: {seeds: 1}}\n  - {task: ner, data: nowhere}\n"
    )
    with pytest.raises(IndusError, match=r"tasks\[1\] \(ner nowhere\): nowhere: unknown ner dataset"):
        run_suite("random:micro", path, data_root=root)


def test_micro_suite_run(tmp_path, root, micro_model_dir):
    path = write_suite(
        tmp_path,
        """
name: micro
tasks:
  - task: ner
    data: toy
    settings: {seeds: 2, epochs: 1, batch_size: 2, lr: 1.0e-3, progress: false}
  - task: cls
    data: tc
    name: tc (micro F1)
    settings: {seeds: 1, max_steps: 1, primary_metric: micro_f1, progress: false}
""",
    )
    seen = []
    result = run_suite(str(micro_model_dir), path, data_root=root, on_row=seen.append)
    assert result["suite"] == "micro" and result["suite_path"] == str(path) and result["wall_s"] > 0
    rows = result["rows"]
    assert seen == rows
    assert [(r["task"], r["data"], r["metric"]) for r in rows] == [
        ("ner", "toy", "f1"),
        ("cls", "tc (micro F1)", "micro_f1"),
    ]
    assert rows[0]["value"] == rows[0]["metrics"]["f1"] and rows[0]["std"] == rows[0]["metrics"]["f1_std"]
    assert rows[0]["metrics"]["seeds"] == 2 and "precision" in rows[0]["also"]
    assert rows[1]["value"] == rows[1]["metrics"]["micro_f1"] and rows[1]["wall_s"] > 0
    json.dumps(result)
