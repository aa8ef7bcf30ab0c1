from __future__ import annotations

import pytest

from indus.pipeline.runner import StageError, StageRunner


def _writer(calls: list[str], name: str, value: int):
    def fn(out, resume):
        calls.append(name)
        (out / "value.txt").write_text(str(value))
        return {"value": value, "resumed": resume}

    return fn


def test_second_run_skips_and_changed_setting_reruns_downstream(tmp_path):
    calls: list[str] = []

    def chain(a_setting: int, b_setting: int):
        run = StageRunner(tmp_path, log=lambda _: None)
        a = run.stage("a", {"x": a_setting}, _writer(calls, "a", a_setting))
        b = run.stage("b", {"y": b_setting}, _writer(calls, "b", b_setting), inputs=[a])
        c = run.stage("c", {}, _writer(calls, "c", 0), inputs=[b])
        return a, b, c

    first = chain(1, 1)
    assert calls == ["a", "b", "c"] and not any(r.cached for r in first)
    calls.clear()
    again = chain(1, 1)
    assert calls == [] and all(r.cached for r in again)
    assert again[0].summary["value"] == 1 and (again[0].path / "value.txt").read_text() == "1"
    calls.clear()
    chain(1, 2)  # b changed: b and c rerun, a is reused
    assert calls == ["b", "c"]
    calls.clear()
    chain(1, 1)  # back to the old settings: every stage is still cached
    assert calls == []


def test_failing_stage_names_itself_and_keeps_earlier_results(tmp_path):
    run = StageRunner(tmp_path, log=lambda _: None)
    a = run.stage("a", {}, _writer([], "a", 5))

    def boom(out, resume):
        (out / "half.txt").write_text("half")
        raise RuntimeError("out of patience")

    with pytest.raises(StageError, match="stage 'b' failed: out of patience") as info:
        run.stage("b", {}, boom, inputs=[a])
    assert info.value.log.is_file() and "RuntimeError" in info.value.log.read_text()
    assert (a.path / "stage.json").is_file()
    assert not list((tmp_path / "stages" / "b").glob("*/stage.json"))  # nothing finished was left for b
    # the partial folder is kept and the next attempt is told it may resume
    calls: list[str] = []
    b = StageRunner(tmp_path, log=lambda _: None).stage("b", {}, _writer(calls, "b", 7), inputs=[a])
    assert b.summary == {"value": 7, "resumed": True} and not b.cached


def test_force_reruns(tmp_path):
    calls: list[str] = []
    StageRunner(tmp_path, log=lambda _: None).stage("a", {}, _writer(calls, "a", 1))
    StageRunner(tmp_path, force=["a"], log=lambda _: None).stage("a", {}, _writer(calls, "a", 1))
    assert calls == ["a", "a"]
