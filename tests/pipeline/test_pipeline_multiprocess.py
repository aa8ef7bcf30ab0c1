"""The pipeline and pretraining launched on two processes (torchrun, gloo on CPU): what a GPU cluster runs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

_spec = importlib.util.spec_from_file_location("micro_pipeline", Path(__file__).with_name("test_pipeline_micro.py"))
_micro = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_micro)
MICRO, _data_root = _micro.MICRO, _micro._data_root

pytestmark = pytest.mark.slow


def _torchrun(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "indus", *args]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_pipeline_on_two_processes_trains_together_and_writes_once(tmp_path):
    data = _data_root(tmp_path / "data")
    # the retriever stops on its time budget: the stop decision is shared by the two processes
    retriever = [{**MICRO["retriever"][0], "settings": {**MICRO["retriever"][0]["settings"], "time_budget_s": 0.01}}]
    cfg = {
        **MICRO,
        "retriever": retriever,
        "eval": {**MICRO["eval"], "baselines": ["random"], "tasks": MICRO["eval"]["tasks"][:1]},
    }
    (tmp_path / "micro.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "INDUS_DATA": str(data), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = tmp_path / "run"
    done = _torchrun(["run", str(tmp_path / "micro.yaml"), "--out", str(out)], env, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    # the training stages ran on both processes as one job: the global batch is twice one process's
    for run in summary["pretrain"]:
        metrics = json.loads(next((out / "stages").glob(f"pretrain--{run['name']}/*/stage.json")).read_text())
        assert metrics["summary"]["metrics"]["world_size"] == 2
        assert run["tokens_seen"] == 2 * 4 * 32 * metrics["summary"]["metrics"]["steps"]
    ret = json.loads(next((out / "stages").glob("retriever--ret/*/stage.json")).read_text())["summary"]["summary"]
    assert ret["stop_reason"] == "time_budget" and ret["steps"] == 1
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert not list((out / "stages").rglob("*.partial")) and not list((out / "stages").rglob("*.failed"))
    # a second launch finds every stage cached; only the main process reports (its log and the table, once)
    again = _torchrun(["run", str(tmp_path / "micro.yaml"), "--out", str(out)], env, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[run]" not in again.stdout and again.stdout.count("[cached] pretrain/micro-s") == 1
    assert again.stdout.count("every model against the baselines") == 1
