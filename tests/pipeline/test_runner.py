from __future__ import annotations

import json
import os
import threading
import time

import pytest

from indus.errors import IndusError
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


def _in_thread(fn):
    box: dict = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def test_non_main_process_waits_for_the_main_result_and_never_runs_the_stage(tmp_path):
    calls = []
    worker = StageRunner(tmp_path, rank=1, world=2, poll_s=0.01, log=lambda line: None, token="launch-1")
    thread, box = _in_thread(lambda: worker.stage("eval/x", {"n": 1}, lambda out, resume: calls.append(1) or {}))
    time.sleep(0.1)
    assert thread.is_alive()  # still waiting: the main process has not finished
    main = StageRunner(tmp_path, rank=0, world=2, log=lambda line: None, token="launch-1")
    done = main.stage("eval/x", {"n": 1}, lambda out, resume: {"value": 7})
    thread.join(5)
    assert not thread.is_alive() and "error" not in box
    assert box["result"].summary == {"value": 7} and box["result"].key == done.key and calls == []


def test_collective_stage_runs_on_every_process_and_only_main_writes(tmp_path):
    seen = []

    def fn(rank):
        def run(out, resume):
            seen.append((rank, out.name))
            return {"rank": rank}

        return run

    worker = StageRunner(tmp_path, rank=1, world=2, poll_s=0.01, log=lambda line: None, token="launch-1")
    thread, box = _in_thread(lambda: worker.stage("pretrain/a", {"n": 1}, fn(1), collective=True))
    thread.join(0.5)
    assert thread.is_alive()  # ran its part, now waits for the main process's stage.json
    main = StageRunner(tmp_path, rank=0, world=2, log=lambda line: None, token="launch-1")
    result = main.stage("pretrain/a", {"n": 1}, fn(0), collective=True)
    thread.join(5)
    assert sorted(r for r, _ in seen) == [0, 1] and len({name for _, name in seen}) == 1
    assert result.summary == {"rank": 0} and box["result"].summary == {"rank": 0}


def test_a_failure_on_the_main_process_reaches_the_waiting_ones(tmp_path):
    worker = StageRunner(tmp_path, rank=1, world=2, poll_s=0.01, log=lambda line: None, token="launch-1")
    thread, box = _in_thread(lambda: worker.stage("eval/x", {"n": 1}, lambda out, resume: {}))
    time.sleep(0.05)
    main = StageRunner(tmp_path, rank=0, world=2, log=lambda line: None, token="launch-1")

    def boom(out, resume):
        raise ValueError("bad column")

    with pytest.raises(StageError, match="bad column"):
        main.stage("eval/x", {"n": 1}, boom)
    thread.join(5)
    assert isinstance(box.get("error"), IndusError) and "failed on the main process: ValueError: bad column" in str(
        box["error"]
    )


def test_rank_and_world_come_from_the_launcher_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    runner = StageRunner(tmp_path, token="launch-1")
    assert (runner.rank, runner.world, runner.is_main) == (3, 8, False)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert StageRunner(tmp_path).is_main


def test_a_forced_stage_is_waited_for_by_run_token_not_by_file_time(tmp_path):
    # an earlier launch finished the stage and failed it once; this launch forces it again
    StageRunner(tmp_path, log=lambda line: None, token="old").stage("eval/x", {"n": 1}, lambda out, resume: {"v": 1})
    old = StageRunner(tmp_path, rank=0, world=2, log=lambda line: None, token="old")
    with pytest.raises(StageError):
        old.stage("eval/x", {"n": 2}, lambda out, resume: 1 / 0)
    done = next((tmp_path / "stages" / "eval--x").glob("*/stage.json"))
    assert json.loads(done.read_text())["run"] == "old"
    os.utime(done, (time.time() + 3600, time.time() + 3600))  # a clock ahead: a file time would say "fresh"
    worker = StageRunner(tmp_path, rank=1, world=2, poll_s=0.01, force=["eval/x"], log=lambda line: None, token="new")
    thread, box = _in_thread(lambda: worker.stage("eval/x", {"n": 1}, lambda out, resume: {}))
    time.sleep(0.2)
    assert thread.is_alive()  # neither the old result nor the old failure counts for this launch
    other = StageRunner(tmp_path, rank=1, world=2, poll_s=0.01, log=lambda line: None, token="new")
    failing = _in_thread(lambda: other.stage("eval/x", {"n": 2}, lambda out, resume: {}))
    time.sleep(0.1)
    assert failing[0].is_alive()  # the old failure marker belongs to another launch
    main = StageRunner(tmp_path, rank=0, world=2, force=["eval/x"], log=lambda line: None, token="new")
    main.stage("eval/x", {"n": 1}, lambda out, resume: {"v": 2})
    thread.join(5)
    assert box["result"].summary == {"v": 2}
    with pytest.raises(StageError):
        main.stage("eval/x", {"n": 2}, lambda out, resume: 1 / 0)
    failing[0].join(5)
    assert "ZeroDivisionError" in str(failing[1]["error"])
