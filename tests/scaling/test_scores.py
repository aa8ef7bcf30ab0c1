from __future__ import annotations

import pandas as pd
import pytest

from indus.errors import DataFormatError, IndusError
from indus.scaling.scores import BUILTIN_TABLES, load_builtin, read_scores, read_table
from indus.scaling.tasks import load_user_task

HEADER = "Model,Model Family,Model Size (B),Pretraining Data Size (T),FLOPs (1E21),MMLU,ARC-C,target\n"


def _write(tmp_path, text, name="scores.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_malformed_row_names_file_and_line(tmp_path):
    path = _write(tmp_path, HEADER + "a,F,1,1,6,0.3,0.4,0.1\nb,F,2,1,12,0.35\n")
    with pytest.raises(DataFormatError) as err:
        read_table(path)
    assert f"{path}:3" in str(err.value) and "8 comma-separated fields" in str(err.value)


def test_non_number_names_line_and_column(tmp_path):
    path = _write(tmp_path, HEADER + "a,F,1,1,6,0.3,0.4,0.1\n\nb,F,2,1,12,0.35,high,0.2\n")
    with pytest.raises(DataFormatError, match=r"scores\.csv:4: a number in column 'ARC-C', got 'high'"):
        read_table(path)


def test_out_of_range_score_and_duplicate_model(tmp_path):
    path = _write(tmp_path, HEADER + "a,F,1,1,6,0.3,0.4,0.1\nb,F,2,1,12,35,0.5,0.2\n")
    with pytest.raises(DataFormatError, match=r":3: benchmark scores in \[0, 1\] in column 'MMLU', got 35"):
        read_scores(path, exclude=["target"])
    dup = _write(tmp_path, HEADER + "a,F,1,1,6,0.3,0.4,0.1\na,F,2,1,12,0.3,0.5,0.2\n", "dup.csv")
    with pytest.raises(DataFormatError, match="already on line 2"):
        read_table(dup)


def test_unknown_columns_are_one_line_errors_naming_the_file(tmp_path):
    rows = "".join(f"m{i},F,{i},1,{i * 10},{0.2 + i / 50},{0.3 + i / 40},{i / 20}\n" for i in range(1, 13))
    path = _write(tmp_path, HEADER + rows)
    with pytest.raises(IndusError, match=r"scores\.csv: unknown target column 'targ'; did you mean 'target'"):
        load_user_task(path, "targ")
    with pytest.raises(IndusError, match=r"scores\.csv: unknown benchmark column 'GSM8K'"):
        load_user_task(path, "target", drop_benchmarks=["GSM8K"])
    targets = _write(tmp_path, "Model,other\nm1,0.1\n", "targets.csv")
    with pytest.raises(IndusError, match=r"targets\.csv: unknown target column 'target'"):
        load_user_task(path, "target", targets)
    no_flops = _write(tmp_path, "Model,Model Family,MMLU\na,F,0.3\n", "noflops.csv")
    with pytest.raises(DataFormatError, match=r"noflops\.csv:1: a 'FLOPs \(1E21\)' column"):
        load_user_task(no_flops, "MMLU")
    data = load_user_task(path, "target", cutoff=60)
    assert data.benchmarks == ["MMLU", "ARC-C"] and int(data.train.sum()) == 6


def test_packaged_tables_load_and_match_the_released_shapes():
    shapes = {
        "base_llm_benchmark_eval.csv": (148, 13),
        "instruct_llm_agent_eval.csv": (27, 30),
        "base_llm_post_training_eval.csv": (96, 235),
        "base_llm_leaderboard_v2_eval.csv": (72, 7),
    }
    for name, shape in shapes.items():
        assert load_builtin(name).shape == shape
    assert len(BUILTIN_TABLES) == 7
    assert isinstance(load_builtin("base_llm_benchmark_eval")["MMLU"].iloc[0], float)
    assert pd.api.types.is_float_dtype(load_builtin("instruct_llm_benchmark_eval.csv")["HellaSwag"])
