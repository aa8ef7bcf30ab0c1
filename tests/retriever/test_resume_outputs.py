"""Retriever runs and their folders: a SIGKILL inside a checkpoint write resumes from the newest complete
checkpoint, a run stopped by its time budget resumes on the same curve, resume refuses another world size and
curve-changing settings, output folders follow one convention, and every folder carries a model card that
quotes no training text."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from indus.cards import read_header
from indus.encoder.checkpoint import MANIFEST, write_manifest
from indus.errors import IndusError
from indus.outdir import read_marker
from indus.retriever.distill import RetrieverDistillConfig, distill_retriever
from indus.retriever.train import RetrieverTrainConfig, train_retriever


def _cfg(model, pairs_dir, **kw) -> RetrieverTrainConfig:
    base = dict(
        model=str(model),
        pairs=[str(pairs_dir)],
        batch_size=4,
        max_seq_length=24,
        max_steps=6,
        logging_steps=1,
        save_steps=2,
    )
    base.update(kw)
    return RetrieverTrainConfig(**base)


def _curve(summary: dict) -> dict[int, float]:
    return {int(step): loss for step, loss in summary["loss_curve"]}


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory) -> Path:
    """Three sources of ten pairs each (the third with hard negatives), shared by this module's runs."""
    folder = tmp_path_factory.mktemp("pairs")
    topics = ["stellar winds", "dark matter", "protein folding", "ocean heat", "sea ice"]
    for source in ("alpha", "beta", "gamma"):
        rows = [
            {
                "anchor": f"{source}: what is {topics[i % 5]}? ({i})",
                "positive": f"{source} notes {i} on {topics[i % 5]}.",
                "source": source,
                **({"negative": f"{source} unrelated {i}."} if source == "gamma" else {}),
            }
            for i in range(10)
        ]
        (folder / f"{source}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def full(micro_model_dir, pairs_dir, tmp_path_factory) -> tuple[dict, Path]:
    """An uninterrupted 6-step run that keeps its checkpoints (2, 4, 6): its summary and folder."""
    out = tmp_path_factory.mktemp("full") / "run"
    return train_retriever(_cfg(micro_model_dir, pairs_dir, keep_checkpoints=True), out), out


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from transformers import Trainer
    from indus.retriever.train import RetrieverTrainConfig, train_retriever

    save_rng = Trainer._save_rng_state

    def dying_save(self, output_dir):
        if output_dir.endswith("checkpoint-4"):  # model and optimizer written, RNG and trainer state not yet
            os.kill(os.getpid(), signal.SIGKILL)
        return save_rng(self, output_dir)

    Trainer._save_rng_state = dying_save
    model, pairs, out = sys.argv[1:4]
    train_retriever(RetrieverTrainConfig(model=model, pairs=[pairs], batch_size=4, max_seq_length=24, max_steps=6,
                                         logging_steps=1, save_steps=2), out)
""")


@pytest.mark.slow
def test_sigkill_inside_a_checkpoint_write_then_resume(micro_model_dir, pairs_dir, tmp_path, full):
    """RELIABILITY: the trainer is killed (SIGKILL) while it writes checkpoint-4; --resume skips that partial
    checkpoint, continues from checkpoint-2, and gives the uninterrupted run's losses.

    Slow (an interpreter start-up plus two short runs, ~30 s on a shared 2-core machine): ``pytest -m slow``.
    """
    full_run = full[0]
    out = tmp_path / "killed"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(micro_model_dir), str(pairs_dir), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    partial, complete = out / "checkpoints" / "checkpoint-4", out / "checkpoints" / "checkpoint-2"
    assert (partial / "model.safetensors").is_file() and not (partial / MANIFEST).exists()
    assert (complete / MANIFEST).is_file() and not (out / "summary.json").exists()
    with pytest.raises(IndusError, match="unfinished .* --resume"):
        train_retriever(_cfg(micro_model_dir, pairs_dir), out)  # a retry without a flag would discard the steps
    resumed = train_retriever(_cfg(micro_model_dir, pairs_dir), out, resume=True)
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["steps"] == 6
    full = _curve(full_run)
    for step, loss in _curve(resumed).items():
        assert loss == pytest.approx(full[step], rel=1e-4), step
    assert sorted(_curve(resumed)) == list(range(1, 7))
    assert read_marker(out)["status"] == "complete"


def test_a_planted_partial_checkpoint_is_skipped(micro_model_dir, pairs_dir, tmp_path, full):
    full_run, full_dir = full
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    for n in (2, 4):
        shutil.copytree(full_dir / "checkpoints" / f"checkpoint-{n}", part / "checkpoints" / f"checkpoint-{n}")
    (part / "checkpoints" / "checkpoint-4" / MANIFEST).unlink()  # checkpoint-4 cut short mid-save
    (part / "checkpoints" / "checkpoint-4" / "trainer_state.json").unlink()
    resumed = train_retriever(_cfg(micro_model_dir, pairs_dir), part, resume=True)
    assert resumed["resumed_from"].endswith("checkpoint-2")
    assert _curve(resumed)[6] == pytest.approx(_curve(full_run)[6], rel=1e-4)


def test_a_budget_stopped_run_resumes_on_the_same_curve(micro_model_dir, pairs_dir, tmp_path, full):
    full_run = full[0]
    out = tmp_path / "budget"
    stopped = train_retriever(_cfg(micro_model_dir, pairs_dir, time_budget_s=1e-3), out)
    assert stopped["stop_reason"] == "time_budget" and stopped["steps"] == 1
    assert (out / "checkpoints" / "checkpoint-1" / MANIFEST).is_file()  # saved at the stopping step, kept
    with pytest.raises(IndusError, match="--resume to continue"):
        train_retriever(_cfg(micro_model_dir, pairs_dir), out)
    # the next launch, without a budget (time_budget_s does not change the curve)
    resumed = train_retriever(_cfg(micro_model_dir, pairs_dir), out, resume=True)
    assert resumed["resumed_from"].endswith("checkpoint-1") and resumed["steps"] == 6
    assert resumed["stop_reason"] == "max_steps" and resumed["pairs_seen"] == full_run["pairs_seen"]
    full = _curve(full_run)
    assert sorted(_curve(resumed)) == list(range(1, 7))
    for step, loss in _curve(resumed).items():
        assert loss == pytest.approx(full[step], rel=1e-4), step
    assert not (out / "checkpoints").exists()
    again = train_retriever(_cfg(micro_model_dir, pairs_dir), out, resume=True)  # finished: returned as it is
    assert again == json.loads((out / "summary.json").read_text())


def test_resume_refuses_another_world_size_and_curve_changing_settings(micro_model_dir, pairs_dir, tmp_path, full):
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    ckpt = part / "checkpoints" / "checkpoint-2"
    shutil.copytree(full[1] / "checkpoints" / "checkpoint-2", ckpt)
    assert json.loads((ckpt / MANIFEST).read_text())["world_size"] == 1
    with pytest.raises(
        IndusError,
        match=r"settings that change the loss curve \(lr: 2e-05 -> 0.001, "
        r"temperature: 0.02 -> 0.05\)",
    ):
        train_retriever(_cfg(micro_model_dir, pairs_dir, lr=1e-3, temperature=0.05), part, resume=True)
    write_manifest(ckpt, world_size=2)  # the checkpoint as a two-process run writes it
    with pytest.raises(IndusError, match="2 processes, this launch has 1"):
        train_retriever(_cfg(micro_model_dir, pairs_dir), part, resume=True)
    write_manifest(ckpt, world_size=1)
    resumed = train_retriever(_cfg(micro_model_dir, pairs_dir, logging_steps=2, save_steps=3), part, resume=True)
    assert resumed["steps"] == 6  # logging and checkpoint frequency may change


def test_output_folder_convention(micro_model_dir, pairs_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(IndusError, match="not empty .*indus did not write.*--overwrite"):
        train_retriever(_cfg(micro_model_dir, pairs_dir, max_steps=1), out)
    summary = train_retriever(_cfg(micro_model_dir, pairs_dir, max_steps=1), out, overwrite=True)
    assert summary["steps"] == 1 and (out / "notes.txt").read_text() == "mine"
    with pytest.raises(IndusError, match="finished .*--overwrite"):
        train_retriever(_cfg(micro_model_dir, pairs_dir, max_steps=1), out)
    failed = tmp_path / "failed"
    with pytest.raises(IndusError):  # fails after the folder was prepared: the model does not exist
        train_retriever(_cfg(tmp_path / "no-such-model", pairs_dir, max_steps=1), failed)
    assert train_retriever(_cfg(micro_model_dir, pairs_dir, max_steps=1), failed)["steps"] == 1  # the retry


def _no_training_text(text: str, pairs_dir: Path) -> None:
    for file in pairs_dir.glob("*.jsonl"):
        for line in file.read_text().splitlines():
            row = json.loads(line)
            for key in ("anchor", "positive", "negative"):
                if key in row:
                    assert row[key] not in text, row[key]


def test_retriever_and_student_cards(micro_model_dir, pairs_dir, tmp_path):
    out = tmp_path / "retriever"
    train_retriever(_cfg(micro_model_dir, pairs_dir, max_steps=2), out)
    head = read_header(out)
    assert head["library_name"] == "sentence-transformers" and "retriever" in head["tags"]
    text = (out / "README.md").read_text()
    assert "Unknown" not in text and f"Base model: `{micro_model_dir}`" in text and "Steps trained: 2" in text
    assert "alpha.jsonl" in text and "GTE" in text and "indus 0.1.0" in text
    _no_training_text(text, pairs_dir)
    student = tmp_path / "student"
    distill_retriever(
        RetrieverDistillConfig(
            teacher=str(out),
            student=f"layers:1@{out}",
            pairs=[str(pairs_dir)],
            batch_size=4,
            max_seq_length=24,
            max_steps=1,
        ),
        student,
    )
    head = read_header(student)
    assert "retriever-student" in head["tags"] and head["pipeline_tag"] == "sentence-similarity"
    text = (student / "README.md").read_text()
    assert "DistillCSE" in text and str(out) in text
    _no_training_text(text, pairs_dir)


def test_a_minilm_start_names_its_hub_base_model():
    from indus.cards import hub_id

    assert hub_id("minilm") == hub_id("layers:3@minilm") == "sentence-transformers/all-MiniLM-L6-v2"
    assert hub_id("random:micro") is None and hub_id("/some/folder") is None
