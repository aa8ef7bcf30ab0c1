from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from indus.cli import app
from indus.errors import IndusError
from indus.scaling.scores import builtin_table_path

runner = CliRunner()

FIT_KEYS = {"task", "n_train", "n_test", "explained_variance_ratio", "pcs", "flops", "params", "predictions"}


def _ok(args):
    result = runner.invoke(app, ["scaling", *args])
    assert result.exit_code == 0, result.output
    return result


def test_tasks_lists_the_stable_names(tmp_path):
    out = tmp_path / "tasks.json"
    _ok(["tasks", "--json", str(out)])
    rows = json.loads(out.read_text())
    assert [r["name"] for r in rows][:3] == ["gsm8k-naive", "gsm8k-cot", "gsm8k-cot-sc"]


def test_fit_builtin_task_writes_the_json_schema_and_plot(tmp_path):
    out, png = tmp_path / "fit.json", tmp_path / "fit.png"
    _ok(["fit", "--task", "persian-qa", "--n-bootstrap", "20", "--json", str(out), "--plot", str(png)])
    doc = json.loads(out.read_text())
    assert set(doc) == FIT_KEYS
    assert set(doc["pcs"]) == {"coef", "intercept", "floor", "train_mse", "test_mse"}
    assert set(doc["flops"]) == {"test_mse"} and set(doc["params"]) == {"test_mse"}
    assert len(doc["explained_variance_ratio"]) == len(doc["pcs"]["coef"]) == 3
    assert doc["n_train"] + doc["n_test"] == len(doc["predictions"])
    pred = doc["predictions"][0]
    assert set(pred) == {"model", "family", "split", "y", "y_pred", "lo", "hi"}
    assert {p["split"] for p in doc["predictions"]} == {"train", "test"}
    assert all(p["lo"] <= p["hi"] for p in doc["predictions"])
    assert png.stat().st_size > 10_000


def test_fit_user_tables(tmp_path):
    out = tmp_path / "fit.json"
    _ok(
        [
            "fit",
            "--scores",
            str(builtin_table_path("base_llm_benchmark_eval")),
            "--targets",
            str(builtin_table_path("base_llm_emergent_capability_eval")),
            "--target",
            "word_unscrambling_2_exact_match",
            "--cutoff-flops",
            "8.4e22",
            "--n-pcs",
            "2",
            "--drop-benchmark",
            "HumanEval",
            "--n-bootstrap",
            "0",
            "--json",
            str(out),
        ]
    )
    doc = json.loads(out.read_text())
    assert doc["task"] == "word_unscrambling_2_exact_match" and len(doc["pcs"]["coef"]) == 2
    assert doc["predictions"][0]["lo"] is None


def test_fit_errors_are_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("Model,Model Family,FLOPs (1E21),MMLU\na,F,1,0.3\nb,F,2\n", encoding="utf-8")
    for args, expected in (
        (["fit", "--scores", str(bad), "--target", "MMLU"], f"{bad}:3: 4 comma-separated"),
        (["fit", "--task", "nope"], "unknown task 'nope'"),
        (["fit", "--task", "gsm8k-cot", "--target", "x"], "--target/--targets go with --scores"),
        (["fit"], "give either --task"),
    ):
        result = runner.invoke(app, ["scaling", *args])
        assert isinstance(result.exception, IndusError), result.output
        assert expected in str(result.exception)
    # through the real entry point: one line on stderr, exit code 2
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from indus.cli import main; main()",
            "scaling",
            "fit",
            "--scores",
            str(bad),
            "--target",
            "MMLU",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and f"{bad}:3" in proc.stderr


def test_pca_and_select_json(tmp_path):
    pca, sel = tmp_path / "pca.json", tmp_path / "sel.json"
    _ok(["pca", "--json", str(pca)])
    doc = json.loads(pca.read_text())
    assert doc["n_models"] == 77 and sum(doc["explained_variance_ratio"][:3]) == pytest.approx(0.967, abs=0.005)
    _ok(["select", "--budget", "8", "--task", "gsm8k-naive", "--n-random", "3", "--json", str(sel)])
    doc = json.loads(sel.read_text())
    assert doc["n_models"] <= 8 and doc["method"] == "exact" and len(doc["models"]) == doc["n_models"]
    assert doc["random"]["n"] == 3 and doc["all_test_mse"] > 0


def test_predict_new_models(tmp_path):
    scores = tmp_path / "mine.csv"
    scores.write_text(
        "Model,MMLU,ARC-C,HellaSwag,Winograd,TruthfulQA,GSM8K,XWinograd,HumanEval\n"
        "mine-7b,0.55,0.52,0.79,0.74,0.41,0.30,0.76,0.20\nmine-1b,0.30,0.35,0.60,0.60,0.38,0.05,0.62,\n",
        encoding="utf-8",
    )
    out = tmp_path / "pred.json"
    _ok(["predict", "--scores", str(scores), "--task", "gsm8k-cot", "--n-bootstrap", "20", "--json", str(out)])
    rows = json.loads(out.read_text())
    assert [r["model"] for r in rows] == ["mine-7b", "mine-1b"]
    assert rows[0]["forecast"] > rows[1]["forecast"]
    assert rows[0]["lo"] <= rows[0]["forecast"] <= rows[0]["hi"]
    result = runner.invoke(app, ["scaling", "predict", "--scores", str(scores), "--task", "agentbench"])
    assert result.exit_code != 0 and "Winogrande" in str(result.exception)


def test_report_writes_markdown_json_and_figures(tmp_path):
    _ok(
        [
            "report",
            str(tmp_path / "rep"),
            "--task",
            "gsm8k-naive",
            "--task",
            "arith-2dm",
            "--n-bootstrap",
            "10",
            "--n-random",
            "2",
        ]
    )
    rep = tmp_path / "rep"
    text = (rep / "report.md").read_text()
    assert "`gsm8k-naive`" in text and "`arith-2dm`" in text and "Model subset selection" in text
    for png in ("pc1_vs_flops.png", "predictions.png", "selection.png"):
        assert (rep / png).stat().st_size > 10_000
    summary = json.loads((rep / "report.json").read_text())
    assert [r["task"] for r in summary["tasks"]] == ["gsm8k-naive", "arith-2dm"]


def test_tasks_say_which_link_each_task_fits(tmp_path):
    out = tmp_path / "tasks.json"
    _ok(["tasks", "--json", str(out)])
    link = {r["name"]: r["link"] for r in json.loads(out.read_text())}
    assert link["gpqa"] == link["bbh-v2"] == "sigmoid"
    assert link["gsm8k-cot"] == "sigmoid, floor in [0, 0.2]"
    assert "agentboard-progress" in link


def test_floor_max_sets_the_link_of_law_and_baselines(tmp_path):
    plain, floored = tmp_path / "plain.json", tmp_path / "floored.json"
    common = [
        "fit",
        "--scores",
        str(builtin_table_path("base_llm_benchmark_eval")),
        "--targets",
        str(builtin_table_path("base_llm_post_training_eval")),
        "--target",
        "bbh_cot_fewshot_overall_3_exact_match,flexible-extract",
        "--drop-benchmark",
        "GSM8K",
        "--n-bootstrap",
        "0",
    ]
    _ok([*common, "--floor-max", "0", "--json", str(plain)])
    _ok([*common, "--json", str(floored)])
    p, f = json.loads(plain.read_text()), json.loads(floored.read_text())
    assert p["pcs"]["floor"] == 0 and f["pcs"]["floor"] > 0.1  # BBH's floor sits at its bound when free
    assert p["flops"]["test_mse"] != f["flops"]["test_mse"]
    default, free = tmp_path / "default.json", tmp_path / "free.json"
    _ok(["fit", "--task", "gpqa", "--n-bootstrap", "0", "--json", str(default)])
    _ok(["fit", "--task", "gpqa", "--floor-max", "0.2", "--n-bootstrap", "0", "--json", str(free)])
    d, f = json.loads(default.read_text()), json.loads(free.read_text())
    assert d["pcs"]["floor"] == 0 < f["pcs"]["floor"]  # the task's plain sigmoid, overridden
    assert f["pcs"]["train_mse"] <= d["pcs"]["train_mse"]
