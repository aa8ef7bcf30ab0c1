"""``indus eval``: the science benchmark harness (NER, QA, IR, classification).

Each command is a thin wrapper over an evaluator of :mod:`indus.evaluation`. The options every command shares are
the module-level ``Annotated`` aliases below (``ModelOpt``, ``DataOpt``, ``JsonOpt``, ``SeedsOpt``, ...); an option
left unset keeps the evaluator's default, and ``--set key=value`` reaches any other evaluator setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from indus._extras import require_extra
from indus.cli.common import console, print_table, write_json

if TYPE_CHECKING:
    from indus.evaluation.result import EvalResult

app = typer.Typer(
    help="Evaluate a model on scientific NER, extractive QA, retrieval and classification.", no_args_is_help=True
)


@app.callback()
def eval_group() -> None:
    """Evaluate a model on scientific NER, extractive QA, retrieval and classification."""


# ----------------------------------------------------------------------------------- shared options

ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="minilm, random:<preset>, random:<model> or a local Hugging Face folder.")
]
DataOpt = Annotated[str, typer.Option("--data", "-d", help="A dataset name under the data root, or a path.")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write the full result as JSON.", show_default=False)]
SplitOpt = Annotated[str | None, typer.Option("--split", help="Split to score (default: test).", show_default=False)]
SeedsOpt = Annotated[
    int | None,
    typer.Option(
        "--seeds", help="Fine-tuning runs with different seeds; metrics are mean and std over them.", show_default=False
    ),
]
EpochsOpt = Annotated[float | None, typer.Option("--epochs", help="Fine-tuning epochs.", show_default=False)]
LrOpt = Annotated[
    str | None,
    typer.Option(
        "--lr",
        help="Peak learning rate, or 'auto' (the default): the best of "
        "three around the model family's usual range, scored on the "
        "dev split, with early stopping on dev.",
        show_default=False,
    ),
]
BatchSizeOpt = Annotated[int | None, typer.Option("--batch-size", help="Training batch size.", show_default=False)]
MaxLengthOpt = Annotated[int | None, typer.Option("--max-length", help="Subword tokens per input.", show_default=False)]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="cpu, cuda, ... (default: CUDA when available).", show_default=False)
]
Bf16Opt = Annotated[
    bool,
    typer.Option(
        "--bf16", help="Forward passes under bfloat16 autocast (about 2x faster on CPUs with AVX-512 BF16 / AMX)."
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Any other evaluator setting, key=value (repeatable).", show_default=False),
]


def run_evaluation(
    task: str, model: str, data: str, json_out: Path | None, overrides: list[str] | None = None, **options: Any
) -> EvalResult | None:
    """Evaluate with the options that were given (``None`` = evaluator default) plus ``--set`` overrides, print
    nothing, write ``--json``; shared by every ``indus eval`` command. ``None``: a process other than the main
    one of a sharded ``indus eval ir`` (the main process writes and prints)."""
    require_extra("eval", what=f"indus eval {task}")
    from indus.config import apply_overrides
    from indus.evaluation import evaluate
    from indus.evaluation.suite import validate_settings

    settings = apply_overrides({k: v for k, v in options.items() if v is not None}, overrides)
    settings = validate_settings(task, settings, where=f"indus eval {task}")
    result = evaluate(task, model, data, **settings)
    if result is not None:
        write_json(json_out, result.to_json())
    return result


def _pm(result: Any, key: str) -> str:
    """``mean ± std`` of a metric, "collapsed" when every seed predicted a single label."""
    if result.get(key) is None:
        return "collapsed" if result.get("collapsed") else ""
    std = result.get(f"{key}_std")
    return f"{result[key]:.4f}" + (f" ± {std:.4f}" if std else "")


def _lr_line(result: EvalResult) -> None:
    """Print how the learning rate was chosen and which seeds collapsed."""
    choice = result.info.get("lr_choice") or {}
    if choice.get("mode") == "auto" and "grid" not in choice:
        console.print(f"lr {choice['lr']:g} ({choice.get('note', '')})")
    elif choice.get("mode") == "auto":
        grid = ", ".join(f"{lr}: {v['dev']:.4f}" for lr, v in choice["grid"].items())
        console.print(
            f"lr {choice['lr']:g} chosen on {choice['dev']} ({choice['dev_examples']} examples; "
            f"{result.primary_metric} {grid})"
        )
    collapsed = result.counts.get("collapsed_seeds")
    if collapsed:
        kept = result.settings.get("on_collapse") == "keep"
        console.print(
            f"{collapsed} of {len(result.per_seed)} seeds collapsed to a single label "
            f"({'kept in' if kept else 'not in'} the mean)"
        )


# --------------------------------------------------------------------------------------------- ner


@app.command("ner")
def ner(
    model: ModelOpt,
    data: DataOpt,
    seeds: SeedsOpt = None,
    epochs: EpochsOpt = None,
    max_train_sentences: Annotated[
        int | None,
        typer.Option(
            "--max-train-sentences", help="Train on a fixed random subset of this many sentences.", show_default=False
        ),
    ] = None,
    max_eval_sentences: Annotated[
        int | None,
        typer.Option(
            "--max-eval-sentences", help="Score a fixed random subset of this many sentences.", show_default=False
        ),
    ] = None,
    split: SplitOpt = None,
    lr: LrOpt = None,
    batch_size: BatchSizeOpt = None,
    max_length: MaxLengthOpt = None,
    scheme: Annotated[
        str | None,
        typer.Option(
            "--scheme",
            help="Tag scheme: auto (detect, repair) or IOB1 / IOB2 / BIOES / BILOU (strict).",
            show_default=False,
        ),
    ] = None,
    predictions: Annotated[
        Path | None,
        typer.Option(
            "--predictions",
            help="Write token / gold / predicted CoNLL lines here (one file per seed).",
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = None,
    bf16: Bf16Opt = False,
    json_out: JsonOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Token-classification fine-tuning; strict entity-level F1 (seqeval, IOB2), mean ± std over seeds."""
    result = run_evaluation(
        "ner",
        model,
        data,
        json_out,
        overrides,
        seeds=seeds,
        epochs=epochs,
        max_train_sentences=max_train_sentences,
        max_eval_sentences=max_eval_sentences,
        split=split,
        lr=lr,
        batch_size=batch_size,
        max_length=max_length,
        scheme=scheme,
        predictions_path=str(predictions) if predictions else None,
        device=device,
        bf16=bf16 or None,
    )
    print_table(
        [
            {
                "model": result["model"],
                "split": result["split"],
                "f1": _pm(result, "f1"),
                "precision": _pm(result, "precision"),
                "recall": _pm(result, "recall"),
                "seeds": result["seeds"],
                "train sent": result["train_sentences"],
                "eval sent": result["eval_sentences"],
                "split sent": result["train_sentences_split"] + result["eval_sentences_split"],
                "wall_s": round(result["wall_s"], 1),
            }
        ],
        title=f"NER (strict, IOB2): {result['data']}",
    )
    print_table(
        [
            {"type": t, "f1": _pm(r, "f1"), "precision": r["precision"], "recall": r["recall"], "support": r["support"]}
            for t, r in (result.metric("per_type") or {}).items()
        ],
        title="per type",
    )
    _lr_line(result)


# --------------------------------------------------------------------------------------------- cls


@app.command("cls")
def cls(
    model: ModelOpt,
    data: DataOpt,
    seeds: SeedsOpt = None,
    epochs: EpochsOpt = None,
    max_train_examples: Annotated[
        int | None,
        typer.Option(
            "--max-train-examples", help="Train on a fixed random subset of this many examples.", show_default=False
        ),
    ] = None,
    max_eval_examples: Annotated[
        int | None,
        typer.Option(
            "--max-eval-examples", help="Score a fixed random subset of this many examples.", show_default=False
        ),
    ] = None,
    split: SplitOpt = None,
    lr: LrOpt = None,
    batch_size: BatchSizeOpt = None,
    max_length: MaxLengthOpt = None,
    primary: Annotated[
        str | None,
        typer.Option("--primary", help="Primary metric: macro_f1 (default), micro_f1 or accuracy.", show_default=False),
    ] = None,
    class_weights: Annotated[
        str | None,
        typer.Option(
            "--class-weights",
            help="'balanced': weight each class's loss by n / (classes x its count) in training.",
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = None,
    bf16: Bf16Opt = False,
    json_out: JsonOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Sequence-classification fine-tuning; micro and macro F1, mean ± std over seeds."""
    result = run_evaluation(
        "cls",
        model,
        data,
        json_out,
        overrides,
        seeds=seeds,
        epochs=epochs,
        max_train_examples=max_train_examples,
        max_eval_examples=max_eval_examples,
        split=split,
        lr=lr,
        batch_size=batch_size,
        max_length=max_length,
        primary_metric=primary,
        class_weights=class_weights,
        device=device,
        bf16=bf16 or None,
    )
    print_table(
        [
            {
                "model": result["model"],
                "split": result["split"],
                "macro_f1": _pm(result, "macro_f1"),
                "micro_f1": _pm(result, "micro_f1"),
                "accuracy": _pm(result, "accuracy"),
                "seeds": result["seeds"],
                "train": result["train_examples"],
                "eval": result["eval_examples"],
                "truncated": result["train_truncated"] + result["eval_truncated"],
                "wall_s": round(result["wall_s"], 1),
            }
        ],
        title=f"classification: {result['data']}",
    )
    majority = result.info["majority_baseline"]
    print_table(
        [
            {
                "predict": f"always {majority['label']} (majority class)",
                "macro_f1": majority["macro_f1"],
                "micro_f1": majority["micro_f1"],
                "accuracy": majority["accuracy"],
            }
        ],
        title="baseline",
    )
    print_table([{"label": k, "f1": v} for k, v in (result.metric("per_label") or {}).items()], title="per label")
    _lr_line(result)


# ---------------------------------------------------------------------------------------------- qa


@app.command("qa")
def qa(
    model: ModelOpt,
    data: Annotated[
        str,
        typer.Option(
            "--data",
            "-d",
            help="A SQuAD file or folder (train/dev/test .json, or one file split by article), or a dataset name.",
        ),
    ],
    seeds: SeedsOpt = None,
    epochs: EpochsOpt = None,
    max_train_questions: Annotated[
        int | None,
        typer.Option(
            "--max-train-questions", help="Train on a fixed random subset of this many questions.", show_default=False
        ),
    ] = None,
    max_eval_questions: Annotated[
        int | None,
        typer.Option(
            "--max-eval-questions", help="Score a fixed random subset of this many questions.", show_default=False
        ),
    ] = None,
    split: SplitOpt = None,
    lr: LrOpt = None,
    batch_size: BatchSizeOpt = None,
    max_length: Annotated[
        int | None, typer.Option("--max-length", help="Tokens per window (default 256).", show_default=False)
    ] = None,
    doc_stride: Annotated[
        int | None,
        typer.Option("--doc-stride", help="Tokens shared by consecutive windows (default 96).", show_default=False),
    ] = None,
    max_answer_length: Annotated[
        str | None,
        typer.Option(
            "--max-answer-length",
            help="Longest predicted answer in tokens, or 'auto' (default: the 95th percentile of the training "
            "answers' lengths).",
            show_default=False,
        ),
    ] = None,
    negative_windows: Annotated[
        int | None,
        typer.Option(
            "--negative-windows",
            help="Answer-free training windows taken per question (default 1).",
            show_default=False,
        ),
    ] = None,
    negative_sampling: Annotated[
        str | None,
        typer.Option(
            "--negative-sampling",
            help="Which answer-free windows: 'hard' (highest window prior, default) or 'random'.",
            show_default=False,
        ),
    ] = None,
    window_prior: Annotated[
        str | None,
        typer.Option(
            "--window-prior",
            help="Add the window's BM25 match with the question to its rank ('bm25', default) or not ('none').",
            show_default=False,
        ),
    ] = None,
    prior_weight: Annotated[
        str | None,
        typer.Option(
            "--prior-weight", help="The window prior's weight, or 'auto' (chosen on dev, default).", show_default=False
        ),
    ] = None,
    read_windows: Annotated[
        int | None,
        typer.Option(
            "--read-windows",
            help="Read only each question's this many highest-prior windows when predicting (default: all).",
            show_default=False,
        ),
    ] = None,
    window_scoring: Annotated[
        str | None,
        typer.Option(
            "--window-scoring",
            help="Rank the windows' best spans by span minus the window's null score "
            "('null_relative', default) or by the raw span score ('span').",
            show_default=False,
        ),
    ] = None,
    null_threshold: Annotated[
        float | None,
        typer.Option(
            "--null-threshold",
            help="SQuAD v2: answer '' when null minus best span score exceeds this (default 0).",
            show_default=False,
        ),
    ] = None,
    predictions: Annotated[
        Path | None,
        typer.Option(
            "--predictions",
            help="Write SQuAD-format predictions {id: answer} here (one file per seed).",
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = None,
    json_out: JsonOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Extractive QA fine-tuning over sliding windows; SQuAD exact match and F1 (no-answer aware)."""
    result = run_evaluation(
        "qa",
        model,
        data,
        json_out,
        overrides,
        seeds=seeds,
        epochs=epochs,
        max_train_questions=max_train_questions,
        max_eval_questions=max_eval_questions,
        split=split,
        lr=lr,
        batch_size=batch_size,
        max_length=max_length,
        doc_stride=doc_stride,
        max_answer_length=max_answer_length,
        negative_windows=negative_windows,
        negative_sampling=negative_sampling,
        window_prior=window_prior,
        prior_weight=prior_weight,
        read_windows=read_windows,
        window_scoring=window_scoring,
        null_threshold=null_threshold,
        predictions_path=str(predictions) if predictions else None,
        device=device,
    )
    row = {
        "model": result["model"],
        "split": result["split"],
        "exact_match": _pm(result, "exact_match"),
        "f1": _pm(result, "f1"),
    }
    for key in ("HasAns_f1", "NoAns_f1", "best_f1", "f1_reader_alone", "answer_window_rate"):
        if result.get(key) is not None:
            row[key] = result[key]
    row.update(
        {
            "seeds": result["seeds"],
            "train q": result["train_questions_used"],
            "eval q": result["eval_questions"],
            "train windows": result["train_windows_positive"] + result["train_windows_negative"],
            "eval windows": result["eval_windows"],
            "wall_s": round(result["wall_s"], 1),
        }
    )
    print_table([row], title=f"extractive QA (SQuAD EM / F1): {result['data']}")
    by_windows = result.get("f1_by_windows") or {}
    if len(by_windows) > 1:
        print_table(
            [{"windows per question": k, "questions": v["questions"], "f1": v["f1"]} for k, v in by_windows.items()],
            title="F1 by context length",
        )
    weights = [r.get("prior_weight") for r in result["per_seed"] if r.get("prior_weight") is not None]
    if weights:
        console.print(f"window prior (BM25) weight per seed: {', '.join(f'{w:g}' for w in weights)}")
    _lr_line(result)


# ---------------------------------------------------------------------------------------------- ir


@app.command("ir")
def ir(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="bm25, minilm, random:<preset> or a local Hugging Face "
            "/ SentenceTransformer folder; A+B (e.g. bm25+minilm) "
            "fuses the systems' rankings by reciprocal-rank "
            "fusion.",
        ),
    ],
    data: Annotated[
        str,
        typer.Option(
            "--data", "-d", help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) or a dataset name."
        ),
    ],
    split: SplitOpt = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Texts per encoder batch.", show_default=False)
    ] = None,
    max_length: Annotated[
        int | None,
        typer.Option("--max-length", help="Encoder tokens per text (default: the model's own).", show_default=False),
    ] = None,
    k: Annotated[
        int | None, typer.Option("--k", help="Documents retrieved per query (default 100).", show_default=False)
    ] = None,
    run: Annotated[
        Path | None, typer.Option("--run", help="Write the run as a TREC run file.", show_default=False)
    ] = None,
    doc_model: Annotated[
        str | None,
        typer.Option(
            "--doc-model",
            help="Encode the documents with this model and only the queries with --model (a small "
            "query encoder distilled into a big model's space; default: the documents model a query-only "
            "student records).",
            show_default=False,
        ),
    ] = None,
    fusion_k: Annotated[
        int | None,
        typer.Option(
            "--fusion-k", help="Reciprocal-rank-fusion constant for --model A+B (default 60).", show_default=False
        ),
    ] = None,
    fusion: Annotated[
        str | None,
        typer.Option(
            "--fusion",
            help="How --model A+B fuses: rrf (default) | convex (w * norm(bm25) + (1 - w) * norm(dense), "
            "bm25+MODEL only).",
            show_default=False,
        ),
    ] = None,
    fusion_weight: Annotated[
        float | None,
        typer.Option(
            "--fusion-weight",
            help="BM25's weight w for --fusion convex (default: chosen on the collection's dev or train qrels).",
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = None,
    json_out: JsonOpt = None,
    overrides: SetOpt = None,
) -> None:
    """BM25, dense (faiss exact inner product) or fused (A+B, RRF) retrieval; nDCG@10, Recall@10/100, MRR@10, speed.

    Under ``torchrun`` every process encodes its shard of the corpus; the main process scores and writes.
    """
    from indus.distributed import sharded_encoding

    with sharded_encoding():
        result = run_evaluation(
            "ir",
            model,
            data,
            json_out,
            overrides,
            split=split,
            batch_size=batch_size,
            max_length=max_length,
            k=k,
            run_path=str(run) if run else None,
            device=device,
            doc_model=doc_model,
            fusion_k=fusion_k,
            fusion=fusion,
            fusion_weight=fusion_weight,
        )
    if result is None:
        return
    latency = result["latency_ms"]
    print_table(
        [
            {
                "model": result["model"] + (f" (documents: {result['doc_model']})" if result.get("doc_model") else ""),
                "split": result["split"],
                "ndcg@10": result["ndcg@10"],
                "recall@10": result["recall@10"],
                "recall@100": result["recall@100"],
                "mrr@10": result["mrr@10"],
                "queries": result["queries"],
                "docs": result["docs"],
                "docs/s": round(result["docs_per_s"], 1),
                "queries/s": round(result["queries_per_s"], 1),
                "ms/query": round(latency, 2) if latency is not None else "",
                "wall_s": round(result["wall_s"], 1),
            }
        ],
        title=f"retrieval: {result['data']}",
    )
    if result.get("fusion") == "convex":
        console.print(f"convex fusion: BM25 weight {result['fusion_weight']} ({result['fusion_weight_from']})")


# ------------------------------------------------------------------------------------------- suite


@app.command("suite")
def suite(
    model: ModelOpt,
    suite_file: Annotated[
        str | None,
        typer.Option(
            "--suite",
            help="A suite YAML file or the name of a packaged suite (default: the default suite).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = None,
) -> None:
    """Run a suite of tasks (YAML: tasks and budgets) and print one table."""
    require_extra("eval", what="indus eval suite")
    from indus.evaluation.suite import run_suite

    def progress(row: dict[str, Any]) -> None:
        console.print(f"{row['task']} {row['data']}: {row['metric']} {row['value']} ({row['wall_s'] or 0:.0f} s)")

    result = run_suite(model, suite_file, on_row=progress)
    columns = ["task", "data", "model", "metric", "value", "std", "also", "wall_s"]
    print_table(
        [{k: "" if r[k] is None else r[k] for k in columns} for r in result["rows"]],
        title=f"suite {result['suite']}: {model} ({result['wall_s'] / 60:.1f} min)",
    )
    write_json(json_out, result)
