"""Retriever quality and speed on SciFact test: BM25, minilm, minilm + GTE fine-tuning, DistillCSE students.

Everything is measured through the IR evaluator (``indus eval ir`` = :class:`indus.evaluation.ir.IREvaluator`,
split ``test``, run depth 100, every dense model truncated to 256 tokens): nDCG@10, Recall@100 and ``latency_ms``,
the median time of one query encoded alone and searched (exact faiss inner product over the 5,183 abstracts),
all models timed in the same process, one after another.

Stages (each a separate heavy job, so run each under the shared CPU lock)::

    flock /tmp/indus-cpu.lock .venv/bin/python benchmarks/retriever_quality.py train     # ~25 min
    flock /tmp/indus-cpu.lock .venv/bin/python benchmarks/retriever_quality.py distill   # ~5-25 min per student
    flock /tmp/indus-cpu.lock .venv/bin/python benchmarks/retriever_quality.py eval      # ~25 min, writes results
    flock /tmp/indus-cpu.lock .venv/bin/python benchmarks/retriever_quality.py latency   # ~3 min, re-times them

``train`` fine-tunes minilm with ``configs/retriever/cpu.yaml`` into ``runs/retriever-quality/teacher``;
``distill`` keeps some of the teacher's layers (``layers:0,3,5@teacher``: first, middle and last; ``layers:0,5``),
optionally narrowing their feed-forward blocks (``/ffn=320``), and distils the teacher into them with
``configs/retriever/cpu-distill.yaml`` (plain DistillCSE, 300 steps) or that plus a recipe (``+emb``: the embedding
term, 900 steps; ``--students 0,5/ffn=320+emb`` picks one); ``eval`` scores every model (and the
cuts before distillation, including the plain lower-3-layer cut, to show what the choice of layers and the
distillation add) and writes ``benchmarks/results/retriever_quality.{md,json}``; ``latency`` re-times every dense
model with all of them interleaved (see :func:`stage_latency`) and rewrites the results; ``render`` rebuilds the
markdown from that JSON without running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.machine import machine_line  # noqa: E402
from indus.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from indus.config import load_config  # noqa: E402
from indus.retriever.bi_encoder import parse_student_spec  # noqa: E402

RUNS = REPO / "runs" / "retriever-quality"
TEACHER = RUNS / "teacher"
CONFIGS = REPO / "configs" / "retriever"
RESULTS = REPO / "benchmarks" / "results"
#: students kept as layer cuts of the teacher: the first and last layers (and the middle one) survive, because the
#: pooled embedding lives in the last layer's space; the plain lower-3 cut is scored too, without distillation.
#: ``/ffn=N`` also narrows every kept feed-forward block to its N most active neurons (of the teacher's 1,536).
#: A student is ``LAYERS[+TAG]``: ``TAG`` names a recipe of extra distillation settings (``RECIPES``); the plain
#: ones use ``configs/retriever/cpu-distill.yaml`` as it is (DistillCSE, 300 steps).
STUDENTS = ("0,3,5", "0,3,5/ffn=320", "0,3,5/ffn=320+long", "0,3,5/ffn=320+emb", "0,5", "0,5/ffn=320+emb")
#: ``emb``: DistillCSE plus the embedding term (``1 - cos`` to the teacher's vector of every text, weight 100,
#: :class:`~indus.retriever.losses.DistillCSELoss`), 900 steps; ``long``: the control, 900 steps without it. Their
#: students are also scored as query encoders over the teacher's index (``doc_model``): the same per-query cost,
#: the teacher's document vectors.
RECIPES = {
    "emb": ["embedding_weight=100", "max_steps=900", "time_budget_s=6000"],
    "long": ["max_steps=900", "time_budget_s=6000"],
}  # the control: as long, without the embedding term
LOWER_CUT = "0,1,2"
LATENCY_ROUNDS, LATENCY_QUERIES = 10, 100  # the interleaved re-timing of ``latency``
MAX_LENGTH = 256


def split_student(student: str) -> tuple[str, str | None]:
    """``"0,3,5/ffn=320+emb"`` -> ``("0,3,5/ffn=320", "emb")``."""
    layers, _, tag = student.partition("+")
    if tag and tag not in RECIPES:
        raise SystemExit(f"unknown student recipe {tag!r}; known: {', '.join(RECIPES)}")
    return layers, tag or None


def shape(student: str) -> tuple[int, int | None]:
    """``(layers kept, FFN width or None)`` of a student or cut, e.g. ``"0,5/ffn=320+emb"`` -> ``(2, 320)``."""
    _, keep, ffn = parse_student_spec(f"layers:{split_student(student)[0]}@teacher")
    return len(keep), ffn


def student_dir(student: str) -> Path:
    (n, ffn), tag = shape(student), split_student(student)[1]
    return RUNS / f"student-{n}l{f'-ffn{ffn}' if ffn else ''}{f'-{tag}' if tag else ''}"


def distill_config(student: str, extra: list[str] | None = None):
    from indus.retriever.distill import RetrieverDistillConfig

    layers, tag = split_student(student)
    overrides = [
        f"teacher={TEACHER}",
        f"student=layers:{layers}@{TEACHER}",
        f"teacher_cache={RUNS / 'teacher-cache'}",
        *RECIPES.get(tag, []),
        *(extra or []),
    ]
    return load_config(RetrieverDistillConfig, CONFIGS / "cpu-distill.yaml", overrides=overrides)


def stage_train(args: argparse.Namespace) -> None:
    from indus.retriever.train import RetrieverTrainConfig, train_retriever

    cfg = load_config(RetrieverTrainConfig, CONFIGS / "cpu.yaml", overrides=args.set)
    summary = train_retriever(cfg, TEACHER, overwrite=True)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("loss_curve", "config")}, indent=2))


def stage_distill(args: argparse.Namespace) -> None:
    from indus.retriever.distill import distill_retriever

    for layers in args.students:
        cfg = distill_config(layers, args.set)
        summary = distill_retriever(cfg, student_dir(layers), overwrite=True)
        print(json.dumps({k: v for k, v in summary.items() if k not in ("loss_curve", "config")}, indent=2))


def _evaluate(
    name: str, model: Any, data: Path, layers: int | None, ffn: int | None = None, doc_model: str | None = None
) -> dict[str, Any]:
    from indus.evaluation import evaluate

    start = time.perf_counter()
    result = evaluate(
        "ir",
        model,
        data,
        split="test",
        max_length=None if model == "bm25" else MAX_LENGTH,
        latency_queries=200,
        progress=False,
        doc_model=doc_model,
    )
    keep = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "latency_ms", "queries_per_s", "docs_per_s")
    row = {
        "model": name,
        "layers": layers,
        "ffn": ffn,
        "doc_model": doc_model,
        **{k: result.get(k) for k in keep},
        "eval_s": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(row), flush=True)
    return row


@dataclass(frozen=True)
class DenseRow:
    """One dense row of the table: ``spec`` is a model spec or folder; ``cut`` (a layers string) marks a cut of the
    teacher before distillation, loaded here because its FFN pruning ranks neurons on the distillation's texts;
    ``doc_model`` (the teacher) encodes the corpus of a row that scores a student as a query encoder only."""

    name: str
    spec: str
    layers: int
    ffn: int | None
    doc_model: str | None = None
    cut: str | None = None

    def model(self) -> Any:
        """The spec, or for a cut the loaded model (so that only the rows that run pay for loading)."""
        if self.cut is None:
            return self.spec
        from indus.retriever.bi_encoder import load_bi_encoder

        # the neurons the distillation runs started from: ranked on the same sample of their training texts
        calibration = distill_config(self.cut).calibration_texts() if self.ffn else None
        return load_bi_encoder(self.spec, max_seq_length=MAX_LENGTH, device="cpu", calibration_texts=calibration)


def dense_models(args: argparse.Namespace) -> list[DenseRow]:
    """Every dense row of the table: minilm, the teacher, each cut before distillation and its students."""
    rows = [
        DenseRow("minilm (all-MiniLM-L6-v2)", "minilm", 6, None),
        DenseRow("minilm + GTE fine-tuning (teacher)", str(TEACHER), 6, None),
    ]
    for layers in dict.fromkeys(split_student(s)[0] for s in (LOWER_CUT, *args.students)):
        n, ffn = shape(layers)
        rows.append(
            DenseRow(f"teacher's layers {layers}, no distillation", f"layers:{layers}@{TEACHER}", n, ffn, cut=layers)
        )
        for student in args.students:
            if split_student(student)[0] != layers or not student_dir(student).is_dir():
                continue
            tag = split_student(student)[1]
            what = (
                f"layers {layers.partition('/')[0]}"
                + (f", FFN {ffn}" if ffn else "")
                + (" + embedding term" if tag == "emb" else "")
                + f", {distill_config(student).max_steps} steps"
            )
            rows.append(DenseRow(f"{n}-layer DistillCSE student ({what})", str(student_dir(student)), n, ffn))
            if tag:  # also as a query encoder over the teacher's index (+long: the control without the term)
                rows.append(
                    DenseRow(
                        f"{n}-layer DistillCSE student ({what}), queries over the teacher's index",
                        str(student_dir(student)),
                        n,
                        ffn,
                        doc_model=str(TEACHER),
                    )
                )
    return rows


def stage_eval(args: argparse.Namespace) -> None:
    data = Path(args.data_root) / "ir" / "scifact"
    if args.add:  # score only the rows of --students missing from the saved results, keep the rest
        saved = json.loads((RESULTS / "retriever_quality.json").read_text())
        rows, known = saved["rows"], {r["model"] for r in saved["rows"]}
        for d in dense_models(args):
            if d.name not in known:
                group = [i for i, r in enumerate(rows) if (r["layers"], r["ffn"]) == (d.layers, d.ffn)]
                rows.insert(
                    group[-1] + 1 if group else len(rows),
                    _evaluate(d.name, d.model(), data, d.layers, d.ffn, d.doc_model),
                )
    else:
        rows = [_evaluate("BM25 (bm25s, Lucene k1 1.2 b 0.75)", "bm25", data, None)]
        rows += [_evaluate(d.name, d.model(), data, d.layers, d.ffn, d.doc_model) for d in dense_models(args)]
    summaries = {p.parent.name: json.loads(p.read_text()) for p in sorted(RUNS.glob("*/summary.json"))}
    write_results(rows, summaries)


def stage_latency(args: argparse.Namespace) -> None:
    """Re-time every dense row of the saved results with the models interleaved: ``LATENCY_ROUNDS`` rounds, each
    timing every model on the same queries one after another, so that a slow spell of the machine hits all models
    alike (timed once each, in turn, one query model differed by 23% between two indexes of the same size). A
    query is encoded alone and searched exactly over a flat index of the collection's size and the model's width
    (random unit vectors: a flat search costs the same whatever the vectors hold)."""
    import statistics

    import faiss
    import numpy as np

    from indus.data.beir import load_beir
    from indus.models import load_sentence_transformer
    from indus.retriever.bi_encoder import encode

    beir = load_beir(Path(args.data_root) / "ir" / "scifact", "test")
    queries = list(beir.eval_queries.values())[:LATENCY_QUERIES]
    rng = np.random.default_rng(0)
    timed, row_of, twins = [], {}, {}
    for d in dense_models(args):
        if d.doc_model is not None:  # a student as a query encoder: the query path of its own row, timed there
            twins[d.name] = row_of[d.spec]
            continue
        row_of[d.spec] = d.name
        model = d.model()
        if isinstance(model, str):
            model = load_sentence_transformer(model, device="cpu", max_seq_length=MAX_LENGTH)
        dim = encode(model, queries[:1]).shape[1]
        vectors = rng.standard_normal((len(beir.corpus), dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        timed.append((d.name, model, index, []))
    for _ in range(LATENCY_ROUNDS):
        for _name, model, index, times in timed:
            index.search(encode(model, queries[:1]), 100)  # warm-up
            for q in queries:
                t0 = time.perf_counter()
                index.search(encode(model, [q]), 100)
                times.append((time.perf_counter() - t0) * 1000.0)
    latency = {name: statistics.median(times) for name, _, _, times in timed}
    latency.update({name: latency[twin] for name, twin in twins.items()})
    saved = json.loads((RESULTS / "retriever_quality.json").read_text())
    for row in saved["rows"]:
        if row["model"] in latency:
            row.setdefault("latency_ms_sequential", row["latency_ms"])  # the evaluator's, one model after another
            row["latency_ms"] = latency[row["model"]]
            row["latency_method"] = f"interleaved: {LATENCY_ROUNDS} rounds x {len(queries)} queries"
    write_results(saved["rows"], saved["runs"], machine=saved["machine"])


def stage_render(args: argparse.Namespace) -> None:
    """Re-render the markdown from the saved JSON (no model is run)."""
    saved = json.loads((RESULTS / "retriever_quality.json").read_text())
    write_results(saved["rows"], saved["runs"], machine=saved["machine"])


def _fmt(v: Any, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def write_results(rows: list[dict[str, Any]], summaries: dict[str, dict[str, Any]], machine: str | None = None) -> None:
    machine = machine or machine_line()
    teacher = next(r for r in rows if r["model"].endswith("(teacher)"))
    minilm = next(r for r in rows if r["model"].startswith("minilm ("))
    for r in rows:
        r["ndcg_vs_teacher"] = r["ndcg@10"] / teacher["ndcg@10"] if r["ndcg@10"] is not None else None
        r["speedup_vs_teacher"] = teacher["latency_ms"] / r["latency_ms"] if r.get("latency_ms") else None
    lines = [
        "# Retriever quality on SciFact test",
        "",
        f"Machine: {machine}",
        "",
        "Commands (each under `flock /tmp/indus-cpu.lock`): `.venv/bin/python benchmarks/retriever_quality.py "
        "train`, then `distill`, then `eval` (this table), then `latency`. Every other number comes from "
        '`indus.evaluation.evaluate("ir", model, "ir/scifact", split="test", max_length=256)`; '
        + (
            "latency of the dense models re-timed by the `latency` stage: the median over "
            f"{LATENCY_ROUNDS} interleaved rounds (every model in turn, each round) of {LATENCY_QUERIES} test "
            "queries, each encoded alone and searched exactly over a flat index of 5,183 vectors; BM25's from "
            "the evaluator (200 single queries)."
            if any(r.get("latency_method") for r in rows)
            else "latency = median of 200 single queries, each encoded alone and searched exactly over 5,183 "
            "abstracts, all models timed in the same process, one after another."
        ),
        "",
        "| model | layers | FFN width | documents encoded by | nDCG@10 | Recall@100 | MRR@10 | latency (ms/query) "
        "| nDCG vs teacher | speed-up vs teacher |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        width = r.get("ffn") or ("full" if r["layers"] else None)
        docs = "n/a" if not r["layers"] else "teacher" if r.get("doc_model") else "itself"
        lines.append(
            f"| {r['model']} | {_fmt(r['layers'])} | {_fmt(width)} | {docs} | {_fmt(r['ndcg@10'])} | "
            f"{_fmt(r['recall@100'])} | "
            f"{_fmt(r['mrr@10'])} | {_fmt(r['latency_ms'], 2)} | {_fmt(r['ndcg_vs_teacher'], 3)} | "
            f"{_fmt(r['speedup_vs_teacher'], 2)}x |"
        )
    lines += ["", "## Targets", ""]
    lines.append(
        f"- fine-tuned above minilm: teacher {teacher['ndcg@10']:.4f} vs minilm {minilm['ndcg@10']:.4f} "
        f"nDCG@10 -> {'met' if teacher['ndcg@10'] > minilm['ndcg@10'] else 'MISSED'}"
    )
    for r in rows:
        if "DistillCSE student" in r["model"]:
            ok_q, ok_s = r["ndcg_vs_teacher"] >= 0.95, r["speedup_vs_teacher"] >= 3.0
            lines.append(
                f"- {r['model']}: {100 * r['ndcg_vs_teacher']:.1f}% of the teacher's nDCG@10 "
                f"(target >= 95%: {'met' if ok_q else 'MISSED'}), {r['speedup_vs_teacher']:.2f}x faster "
                f"per query (target >= 3x: {'met' if ok_s else 'MISSED'})"
            )
    dense = [
        r
        for r in rows
        if r["layers"]
        and r.get("latency_ms")
        and not r.get("ffn")  # full-width layers
        and not r.get("doc_model")
    ]
    if len({r["layers"] for r in dense}) >= 2:
        import numpy as np

        per_layer, fixed = np.polyfit([r["layers"] for r in dense], [r["latency_ms"] for r in dense], 1)
        lines.append(
            f"- latency against depth (least squares over the {len(dense)} dense rows): {per_layer:.2f} ms "
            f"per layer + {fixed:.2f} ms per query that does not shrink with depth, so a cut of k of the "
            f"teacher's {teacher['layers']} layers is at most "
            f"{(per_layer * teacher['layers'] + fixed) / (per_layer + fixed):.1f}x faster even at k = 1"
        )
    if teacher.get("latency_ms_sequential") and minilm.get("latency_ms_sequential"):
        seq_t, seq_m = teacher["latency_ms_sequential"], minilm["latency_ms_sequential"]
        sequential = {r["model"]: r.get("latency_ms_sequential") for r in rows}
        pairs = [
            (sequential[r["model"]], sequential[r["model"].split(", queries over")[0]])
            for r in rows
            if r.get("doc_model")
        ]  # one query model, on its own index and on the teacher's
        gaps = [max(a, b) / min(a, b) - 1 for a, b in pairs if a and b]
        lines.append(
            f"- why the latencies are re-timed interleaved: timed by the evaluator one model after another, "
            f"minilm and the teacher (the same 6 x 384 architecture) took {seq_m:.2f} and {seq_t:.2f} ms "
            f"({100 * (max(seq_t, seq_m) / min(seq_t, seq_m) - 1):.0f}% apart; interleaved "
            f"{minilm['latency_ms']:.2f} and {teacher['latency_ms']:.2f} ms)"
            + (
                f", and the same query model on its own index and on the teacher's up to {100 * max(gaps):.0f}% apart"
                if gaps
                else ""
            )
        )
    lines += [
        "",
        "## Training runs",
        "",
        "| run | steps | pairs seen | wall (s) | final loss | stop | sources |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in summaries.items():
        lines.append(
            f"| {name} | {s['steps']} | {s['pairs_seen']} | {s['wall_s']} | {_fmt(s['final_loss'], 3)} | "
            f"{s['stop_reason']} | {', '.join(f'{k} {v}' for k, v in s['sources'].items())} |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / "retriever_quality.md", "\n".join(lines) + "\n")
    atomic_write_json(
        RESULTS / "retriever_quality.json",
        {
            "machine": machine,
            "rows": rows,
            "runs": {k: {kk: vv for kk, vv in v.items() if kk != "loss_curve"} for k, v in summaries.items()},
        },
    )
    print("\n".join(lines))


def main() -> None:
    global RUNS, TEACHER, RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("train", "distill", "eval", "latency", "render"))
    parser.add_argument("--data-root", default=os.environ.get("INDUS_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument(
        "--students", nargs="+", default=list(STUDENTS), help="teacher layers kept by each student, e.g. 0,3,5"
    )
    parser.add_argument("--set", action="append", help="config override for train/distill, key=value")
    parser.add_argument(
        "--add",
        action="store_true",
        help="eval: score only the --students rows the saved results lack, keep the others",
    )
    parser.add_argument("--runs", type=Path, default=RUNS, help="folder of the trained models")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the result files")
    args = parser.parse_args()
    os.environ["INDUS_DATA"] = args.data_root
    RUNS, TEACHER, RESULTS = args.runs, args.runs / "teacher", args.results
    {
        "train": stage_train,
        "distill": stage_distill,
        "eval": stage_eval,
        "latency": stage_latency,
        "render": stage_render,
    }[args.stage](args)


if __name__ == "__main__":
    main()
