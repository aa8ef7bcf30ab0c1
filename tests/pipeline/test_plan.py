"""Plan, then run: the whole micro pipeline is built and checked before its first stage, and explained dry."""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from indus.config import load_config
from indus.errors import IndusError
from indus.pipeline import PipelineConfig, build_plan, explain, run_pipeline
from indus.pipeline.plan import diff_settings

_spec = importlib.util.spec_from_file_location("micro_pipeline", Path(__file__).with_name("test_pipeline_micro.py"))
_micro = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_micro)
MICRO, _data_root = _micro.MICRO, _micro._data_root


@pytest.fixture()
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("INDUS_DATA", str(_data_root(tmp_path / "data")))
    return tmp_path


def _config(tmp_path: Path, change) -> Path:
    cfg = copy.deepcopy(MICRO)
    change(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _last_stage_typo(cfg):
    cfg["eval"]["tasks"][1]["settings"]["latency_querys"] = 2  # the last benchmark, an unknown eval setting


def _retriever_distill_typo(cfg):
    cfg["retriever_distill"][0]["settings"]["max_stepz"] = 2


def _bad_eval_type(cfg):
    cfg["eval"]["tasks"][0]["settings"]["epochs"] = "many"


@pytest.mark.parametrize(
    "change, key, says",
    [
        (_last_stage_typo, "eval.tasks[ir:toyir]", "latency_querys"),
        (_retriever_distill_typo, "retriever_distill[ret-student]", "max_stepz"),
        (_bad_eval_type, "eval.tasks[ner:toy]", "epochs"),
    ],
)
def test_a_bad_setting_in_a_late_stage_is_refused_before_any_stage_runs(data, change, key, says):
    config = _config(data, change)
    out = data / "run"
    logs: list[str] = []
    with pytest.raises(IndusError) as info:
        run_pipeline(load_config(PipelineConfig, config), out, log=logs.append, source=config)
    message = str(info.value)
    assert message.startswith(f"{config}: {key}") and says in message, message
    assert logs == [] and not (out / "stages").exists()  # not one stage ran, not even the tokenizer


def test_cli_refuses_a_bad_last_stage_and_a_bad_reference_in_one_line(data):
    for change, says in (
        (_last_stage_typo, "latency_querys"),
        (lambda c: c["retriever"][0].update(model="pretrain:nope"), "'pretrain:nope' names no"),
    ):
        config = _config(data, change)
        proc = subprocess.run(
            [sys.executable, "-m", "indus", "run", str(config), "--out", str(data / "o")],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert str(config) in proc.stderr and says in proc.stderr and proc.stderr.strip().count("\n") == 0
        assert not (data / "o" / "stages").exists()


def test_plan_keys_and_folders_are_known_before_anything_runs(data):
    config = _config(data, lambda c: None)
    plan = build_plan(load_config(PipelineConfig, config), data / "run")
    names = list(plan.stages)
    assert names[0] == "tokenizer" and names[-1] == "scaling"
    assert names.index("pretrain/micro-l") < names.index("distill/micro-student") < names.index("eval/ner-toy/micro-l")
    student = plan.stages["distill/micro-student"]
    assert student.inputs == ["pretrain/micro-l"]
    # a later stage's input folder is known now: the teacher's model folder under its key
    teacher = plan.stages["pretrain/micro-l"]
    assert teacher.path == data / "run" / "stages" / "pretrain--micro-l" / teacher.key
    # the random baseline takes the first of the largest runs' shape and its (future) folder
    random = next(m for m in plan.models if m.kind == "baseline" and m.name.startswith("random:"))
    assert random.spec == f"random:micro@{plan.stages['pretrain/micro-s'].path / 'model'}"
    lines = explain(plan)
    assert len(lines) == len(plan.stages) + 1 and all("never run" in line for line in lines[:-1])


def test_diff_names_the_changed_leaf():
    assert diff_settings({"a": {"b": [1, 2]}, "c": 1}, {"a": {"b": [1, 3]}, "d": 2}) == [
        "a.b[1]: 2 -> 3",
        "c: 1 (removed)",
        "d: (new) 2",
    ]


def test_dry_run_says_why_from_the_last_finished_record(data):
    import json

    config = _config(data, lambda c: None)
    plan = build_plan(load_config(PipelineConfig, config), data / "run")
    tok = plan.stages["tokenizer"]
    old = json.loads(json.dumps(tok.settings, default=str))
    old["section"]["vocab_size"] = 300
    old["data"][0][1] += 1  # the training file had another size then
    record = tok.path.parent / "0123456789ab" / "stage.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"settings": old, "inputs": [], "finished": 1.0}))
    pre = plan.stages["pretrain/micro-s"]
    (pre.path / "stage.json").parent.mkdir(parents=True)
    (pre.path / "stage.json").write_text(json.dumps({"settings": pre.settings, "inputs": [], "summary": {}}))
    lines = {line.split()[1]: line for line in explain(plan, force=["eval/ner-toy/minilm"])[:-1]}
    assert lines["tokenizer"].startswith("[run]")
    assert lines["tokenizer"].endswith("section.vocab_size: 300 -> 400; data changed: train.jsonl")
    assert lines["pretrain/micro-s"].startswith("[cached]")
    assert lines["eval/ner-toy/minilm"].endswith("forced (--force)")
    partial = plan.stages["pretrain/micro-m"].path.parent / f".{plan.stages['pretrain/micro-m'].key}.partial"
    (partial / "checkpoints").mkdir(parents=True)
    assert explain(plan)[2].startswith("[resume] pretrain/micro-m")


def test_data_copied_again_keeps_the_stage_keys_and_changed_bytes_do_not(data, tmp_path, monkeypatch):
    import os
    import shutil

    monkeypatch.setenv("INDUS_CACHE", str(tmp_path / "cache"))
    config = load_config(PipelineConfig, _config(data, lambda c: None))
    before = {name: s.key for name, s in build_plan(config, data / "run").stages.items()}
    root = Path(os.environ["INDUS_DATA"])
    shutil.copytree(root, tmp_path / "copy")  # new files, new modification times, the same bytes
    shutil.rmtree(root)
    shutil.copytree(tmp_path / "copy", root, copy_function=shutil.copy)  # copy: mtimes are not preserved
    assert {name: s.key for name, s in build_plan(config, data / "run").stages.items()} == before
    train = next(p for p in sorted(root.rglob("train.jsonl")))
    train.write_bytes(train.read_bytes().replace(b"e", b"a", 1))  # same size, other bytes
    changed = {name for name, s in build_plan(config, data / "run").stages.items() if s.key != before[name]}
    assert "tokenizer" in changed


def test_a_record_with_modification_times_says_the_fingerprints_changed_format(data):
    import json

    plan = build_plan(load_config(PipelineConfig, _config(data, lambda c: None)), data / "run")
    tok = plan.stages["tokenizer"]
    old = json.loads(json.dumps(tok.settings, default=str))
    old["data"] = [[name, size, 1_700_000_000_000_000_000] for name, size, _ in old["data"]]  # an older indus
    record = tok.path.parent / "0123456789ab" / "stage.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"settings": old, "inputs": [], "finished": 1.0}))
    line = next(line for line in explain(plan) if line.split()[1] == "tokenizer")
    assert line.endswith("data recorded by size and modification time (an older indus); now by content")
