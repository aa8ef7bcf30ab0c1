"""Stage 2 on a collection's own judgements with mined hard negatives: SciFact, nothing chosen on test.

The recipe (``configs/retriever/cpu-stage2.yaml``) fine-tunes minilm on the training judgements of a BEIR
collection (query -> judged document, ``indus retriever mine --pairs ir/scifact:train``) with hard negatives
mined by minilm from the collection's corpus (3 per pair, NV-Retriever's relative-margin filter off: on SciFact it
dropped a sixth of the candidates and 93 of 735 pairs, and both settings tried without it scored higher on dev).
``prepare`` holds out a fifth of the train queries as a ``dev`` split (:func:`indus.data.beir.holdout`); the models
train on the other four fifths; the candidate settings (``CANDIDATES``) are scored on dev and the best is the recipe
(``choose``), and the ablations remove one part at a time from the cheapest candidate; the convex-fusion weight
with BM25 is chosen on dev too.

Stages (each a heavy job; run them under the shared CPU lock)::

    python benchmarks/retriever_stage2.py prepare                # the dev hold-out (seconds)
    python benchmarks/retriever_stage2.py mine                   # minilm negatives, filter on and off
    python benchmarks/retriever_stage2.py mine minilm-n3 minilm-n3-nofilter   # 3 negatives per pair
    python benchmarks/retriever_stage2.py train mined mined-t05 mined-t05-e6 mined-t05-n3 mined-t05-n3-nofilter
    python benchmarks/retriever_stage2.py eval bm25 minilm mined mined-t05 mined-t05-e6 mined-t05-n3 \
        mined-t05-n3-nofilter                                    # the candidates
    python benchmarks/retriever_stage2.py choose                 # the best on dev is the recipe
    python benchmarks/retriever_stage2.py train pairs nofilter more-pairs stage1 stage1-stage2 mined-t05-seed1 \
        mined-t05-seed2                                          # ablations, and the base's seed spread
    python benchmarks/retriever_stage2.py distill                # the 2-layer DistillCSE student of the recipe
    python benchmarks/retriever_stage2.py qdistill               # the query encoders of the recipe (QUERY_STUDENTS)
    python benchmarks/retriever_stage2.py eval pairs nofilter more-pairs stage1 stage1-stage2 student student-int8 \
        qstudent-1l-ffn384 qstudent-1l-ffn768 qstudent-1l qstudent-2l-ffn320 qstudent-2l-ffn320-ict \
        qstudent-2l-ffn128-ict qstudent-2l-ffn320-ict-all qstudent-2l-ffn320-ict-all-seed1
    python benchmarks/retriever_stage2.py eval mined-t05-n3-nofilter-int8 qstudent-1l-ffn384-int8 \
        qstudent-1l-ffn768-int8 qstudent-1l-int8 qstudent-2l-ffn320-int8 qstudent-2l-ffn320-ict-int8 \
        qstudent-2l-ffn128-ict-int8 qstudent-2l-ffn320-ict-all-int8 qstudent-2l-ffn320-ict-all-seed1-int8
                                                                 # NAME-int8: NAME's query encoder exported int8
    python benchmarks/retriever_stage2.py latency [--note TEXT]  # the recipe vs its students, interleaved, alone
    python benchmarks/retriever_stage2.py choose-student         # the query encoder: best dev at >= 5x
    python benchmarks/retriever_stage2.py latency-repeat         # x4: the chosen one's speed-up, fresh processes
    python benchmarks/retriever_stage2.py render                 # the markdown from the JSON

Stages that train or score may run side by side (one per core, ``OMP_NUM_THREADS=1``): each result is written
under a lock. ``latency`` should run alone.

Results: ``benchmarks/results/retriever_stage2.{md,json}``. Scores come from the IR evaluator's classes
(:mod:`indus.evaluation.ir`: exact inner-product search over the 5,183 abstracts, documents truncated to 256
tokens, the query's own id ignored, pytrec_eval); each model's corpus is encoded once (through the embedding cache
of ``indus retriever mine``) for dev and test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.machine import OthersLoad, machine_line, results_lock  # noqa: E402
from indus.atomic import atomic_write_json, atomic_write_text  # noqa: E402

RUNS = REPO / "runs" / "retriever-stage2"
DATA = RUNS / "scifact"  # the hold-out copy: qrels train (4/5), dev (1/5), test (as published)
MINED = RUNS / "mined"  # the mined pair files
MODELS = RUNS / "models"  # the trained models, one folder per variant
CONFIG = REPO / "configs" / "retriever" / "cpu-stage2.yaml"
RESULTS = REPO / "benchmarks" / "results"
OUT_JSON, OUT_MD = RESULTS / "retriever_stage2.json", RESULTS / "retriever_stage2.md"
MAX_LENGTH = 256

#: what each mined file is: the mining settings (``indus retriever mine`` options)
MINES = {
    "minilm": {"model": "minilm", "margin": 0.95},
    "minilm-nofilter": {"model": "minilm", "margin": None},
    "minilm-n3": {"model": "minilm", "margin": 0.95, "negatives": 3},
    "minilm-n3-nofilter": {"model": "minilm", "margin": None, "negatives": 3},
}
#: candidate recipes: (description, mined file, config overrides, every setting that differs spelled out so that
#: the config file can carry the chosen one); ``choose`` keeps the best by dev nDCG@10: "the recipe"
CANDIDATES: dict[str, tuple[str, str, list[str]]] = {
    "mined": (
        "1 mined negative per pair, temperature 0.02 (GTE), lr 2e-5, 3 epochs",
        "minilm",
        ["temperature=0.02", "lr=2e-5", "epochs=3"],
    ),
    "mined-t05": (
        "1 mined negative per pair, temperature 0.05 (minilm's own scale 20), lr 5e-5, 3 epochs",
        "minilm",
        ["temperature=0.05", "lr=5e-5", "epochs=3"],
    ),
    "mined-t05-e6": (
        "1 mined negative per pair, temperature 0.05, lr 5e-5, 6 epochs",
        "minilm",
        ["temperature=0.05", "lr=5e-5", "epochs=6"],
    ),
    "mined-t05-n3": (
        "3 mined negatives per pair (3 rows), temperature 0.05, lr 5e-5, 3 epochs",
        "minilm-n3",
        ["temperature=0.05", "lr=5e-5", "epochs=3"],
    ),
    "mined-t05-n3-nofilter": (
        "3 mined negatives per pair (3 rows) without the margin filter, temperature 0.05, lr 5e-5, 3 epochs",
        "minilm-n3-nofilter",
        ["temperature=0.05", "lr=5e-5", "epochs=3"],
    ),
}
#: general science pairs (no SciFact judgements): the "more pairs" and "stage 1" ablations, and the student's extra data
GENERAL_PAIRS = ["pairs/climate-fever", "pairs/scitldr", "pairs/scisumm-titles", "pairs/elife-titles"]
#: ablations: (description, how the mined file changes (None: no mined file), extra overrides, extra pair files),
#: each applied to ``ABLATION_BASE``, the cheapest candidate (one negative per pair, 3 epochs: ~10 CPU minutes a run;
#: the recipe's 3 negatives cost 30)
ABLATION_BASE = "mined-t05"
ABLATIONS: dict[str, tuple[str, str | None, list[str], list[str]]] = {
    "pairs": (
        "judged pairs only (in-batch negatives), temperature 0.05, lr 5e-5, 3 epochs",
        "",
        ["hard_negatives=false"],
        [],
    ),
    "nofilter": (
        "1 mined negative per pair without the margin filter, temperature 0.05, lr 5e-5, 3 epochs",
        "-nofilter",
        [],
        [],
    ),
    "more-pairs": (
        "1 mined negative per pair + 500 general science pairs from each of climate-fever, SciTLDR, SciSumm titles "
        "and eLife titles (one source per batch), temperature 0.05, lr 5e-5, 3 epochs",
        "",
        ["max_pairs_per_source=500"],
        GENERAL_PAIRS,
    ),
    "stage1": (
        "stage 1 alone: the 2,000 general science pairs of `more-pairs`, no SciFact pairs, temperature 0.05, "
        "lr 5e-5, 1 epoch",
        None,
        ["max_pairs_per_source=500", "epochs=1"],
        GENERAL_PAIRS,
    ),
    **{
        f"mined-t05-seed{k}": (f"`mined-t05` again with seed {k} (the spread of one setting)", "", [f"seed={k}"], [])
        for k in (1, 2)
    },
    "stage1-stage2": (
        "stage 1 (the row above) then stage 2: `mined-t05` trained from the stage-1 model instead of minilm",
        "",
        [f"model={RUNS / 'models' / 'stage1'}"],
        [],
    ),
}


def recipe(saved: dict[str, Any]) -> str:
    """The candidate chosen on dev (``choose``)."""
    if "recipe" not in saved:
        raise SystemExit("no recipe chosen yet: run `choose` after training and scoring the candidates")
    return saved["recipe"]["variant"]


def variant(name: str) -> tuple[str, str | None, list[str], list[str]]:
    """``(description, mined file or None, overrides, extra pair files)`` of a candidate or of an ablation of
    :data:`ABLATION_BASE`."""
    if name in CANDIDATES:
        return (*CANDIDATES[name], [])
    what, suffix, extra, pairs = ABLATIONS[name]
    _, mined, overrides = CANDIDATES[ABLATION_BASE]
    return what, None if suffix is None else mined + suffix, [*overrides, *extra], pairs


def data_root() -> Path:
    root = os.environ.get("INDUS_DATA") or str(REPO.parent / "shared" / "data")
    return Path(root)


def load_results() -> dict[str, Any]:
    return json.loads(OUT_JSON.read_text()) if OUT_JSON.is_file() else {"rows": {}, "runs": {}, "mines": {}}


def save_results(saved: dict[str, Any]) -> None:
    saved["machine"] = machine_line()
    atomic_write_json(OUT_JSON, saved)
    atomic_write_text(OUT_MD, render(saved))


def record(section: str, name: str, value: dict[str, Any]) -> None:
    """Put one result into the results file: read, change and write under a lock, so that stages running side by
    side (one per core) do not drop each other's results."""
    with results_lock("indus-retriever-stage2"):
        saved = load_results()
        saved.setdefault(section, {})[name] = value
        save_results(saved)
    print(json.dumps({name: value}), flush=True)


def stage_prepare(args: argparse.Namespace) -> None:
    from indus.data.beir import holdout

    counts = holdout(data_root() / "ir" / "scifact", DATA, split="train", dev="dev", fraction=0.2, seed=0)
    counts["corpus_title_pairs"] = write_corpus_titles(DATA / "corpus.jsonl", CORPUS_TITLES)
    counts["corpus_sentence_pairs"] = write_corpus_sentences(DATA / "corpus.jsonl", CORPUS_SENTENCES)
    counts["corpus_sentence_pairs_all"] = write_corpus_sentences(
        DATA / "corpus.jsonl", CORPUS_SENTENCES_ALL, per_doc=ALL_SENTENCES_PER_DOC, by_rank=True
    )
    print(json.dumps(counts))


def write_corpus_sentences(corpus: Path, out: Path, per_doc: int = 4, seed: int = 0, by_rank: bool = False) -> int:
    """Inverse-cloze pairs from the collection's own documents (Lee et al. 2019; no queries, no judgements): up to
    ``per_doc`` sentences of 6-60 words of each abstract, each paired with the whole document (title + text, as the
    index holds it). ``by_rank``: the k-th sentence drawn from each abstract goes to source ``corpus-sentences-k``,
    so that a batch (one source per batch) never holds two sentences of one abstract, which would be each other's
    false negatives, and a per-source cap keeps at most one sentence per abstract per source. Returns the number
    of pairs."""
    import gzip
    import random
    import re

    from indus.atomic import atomic_path
    from indus.data.beir import Document
    from indus.data.jsonl import iter_jsonl

    rng, n = random.Random(seed), 0
    with atomic_path(out) as tmp, gzip.open(tmp, "wt", encoding="utf-8") as fh:
        for _, row in iter_jsonl(corpus):
            text = (row.get("text") or "").strip()
            sentences = [x for x in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9(])", text) if 6 <= len(x.split()) <= 60]
            document = Document(row.get("title") or "", text).full_text()
            for k, sentence in enumerate(rng.sample(sentences, min(per_doc, len(sentences)))):
                source = f"corpus-sentences-{k}" if by_rank else "corpus-sentences"
                fh.write(json.dumps({"anchor": sentence, "positive": document, "source": source}) + "\n")
                n += 1
    return n


def write_corpus_titles(corpus: Path, out: Path) -> int:
    """The collection's own documents as pairs, title -> abstract (no queries, no judgements): in-domain query-like
    anchors for a query encoder. Returns the number of pairs."""
    import gzip

    from indus.atomic import atomic_path
    from indus.data.jsonl import iter_jsonl

    n = 0
    with atomic_path(out) as tmp, gzip.open(tmp, "wt", encoding="utf-8") as fh:
        for _, row in iter_jsonl(corpus):
            title, text = (row.get("title") or "").strip(), (row.get("text") or "").strip()
            if title and text:
                fh.write(json.dumps({"anchor": title, "positive": text, "source": "corpus-titles"}) + "\n")
                n += 1
    return n


def stage_mine(args: argparse.Namespace) -> None:
    from indus.retriever.mine import MineSettings, mine_negatives

    for name in args.names or list(MINES):
        spec = MINES[name]
        settings = MineSettings(margin=spec["margin"], negatives=spec.get("negatives", 1), max_seq_length=MAX_LENGTH)
        summary = mine_negatives(spec["model"], [f"{DATA}:train"], DATA, MINED / f"{name}.jsonl.gz", settings)
        record("mines", name, {k: v for k, v in summary.items() if not isinstance(v, list | dict) or k == "settings"})


def train_config(name: str, extra: list[str] | None = None):
    from indus.config import load_config
    from indus.retriever.train import RetrieverTrainConfig

    _, mined, overrides, pairs = variant(name)
    files = ([str(MINED / f"{mined}.jsonl.gz")] if mined else []) + pairs
    sets = [f"pairs=[{','.join(files)}]", *overrides, *(extra or [])]
    return load_config(RetrieverTrainConfig, CONFIG, overrides=sets)


def stage_train(args: argparse.Namespace) -> None:
    from indus.retriever.train import train_retriever

    for name in args.names:
        cfg = train_config(name, list(args.set or []))
        summary = train_retriever(cfg, MODELS / name, overwrite=True)
        run = {k: v for k, v in summary.items() if k not in ("loss_curve", "config")}
        record("runs", name, {**run, "epochs": cfg.epochs})


class Scorer:
    """One collection, read once: BM25 built once; each dense model's corpus encoded once for every split."""

    def __init__(self) -> None:
        from indus.data.beir import load_beir
        from indus.evaluation.ir import Bm25Retriever

        self.splits = {s: load_beir(DATA, s) for s in ("dev", "test")}
        corpus = self.splits["test"].corpus
        self.doc_ids = list(corpus)
        self.texts = [corpus[d].full_text() for d in self.doc_ids]
        self.bm25 = Bm25Retriever()
        self.bm25.index(self.doc_ids, self.texts)

    def _score(self, retriever: Any, split: str) -> dict[str, float]:
        from indus.evaluation.ir import score_run

        beir = self.splits[split]
        queries = beir.eval_queries
        hits = retriever.search(list(queries.values()), 101)
        run = {q: dict([(d, s) for d, s in ranked if d != q][:100]) for q, ranked in zip(queries, hits, strict=True)}
        metrics = score_run(run, beir.qrels, ignore_identical_ids=True)
        return {m: metrics[m] for m in ("ndcg@10", "recall@100", "mrr@10")}

    def bm25_row(self) -> dict[str, Any]:
        return {s: self._score(self.bm25, s) for s in self.splits}

    def dense(self, spec: str) -> Any:
        """A dense retriever over the corpus: the document vectors come from the embedding cache that
        ``indus retriever mine`` fills (the same encoder call, keyed by model identity and texts), so a model
        mined with, or scored before, is not encoded again."""
        import faiss

        from indus.evaluation.ir import DenseRetriever
        from indus.retriever import mine

        if not hasattr(self, "scan"):
            self.corpus_file = DATA / "corpus.jsonl"
            self.scan = mine.scan_corpus(self.corpus_file)
            assert self.scan.ids == self.doc_ids
        lazy = mine.LazyModel(spec, MAX_LENGTH)
        emb, _ = mine.cached_embeddings(
            lazy,
            mine.model_identity(spec, MAX_LENGTH),
            self.scan.digest,
            len(self.doc_ids),
            mine._corpus_chunks(self.corpus_file, 1024),
            mine.default_cache_dir(),
            progress=True,
            desc=f"encode corpus ({Path(spec).name})",
        )
        dense = DenseRetriever(lazy.get(), batch_size=64)
        dense.doc_ids = list(self.doc_ids)
        dense.faiss_index = faiss.IndexFlatIP(emb.shape[1])
        dense.faiss_index.add(np.ascontiguousarray(emb))
        return dense

    def dense_row(self, spec: str, query_model: str | None = None) -> dict[str, Any]:
        from indus.evaluation.ir import ConvexFusedRetriever
        from indus.models import load_sentence_transformer

        t0 = time.perf_counter()
        dense = self.dense(spec)
        if query_model is not None:
            dense.model = load_sentence_transformer(query_model, device="cpu", max_seq_length=MAX_LENGTH)
        row: dict[str, Any] = {"encode_s": round(time.perf_counter() - t0, 1)}
        row.update({s: self._score(dense, s) for s in self.splits})
        fused = ConvexFusedRetriever(self.bm25, dense)
        dev = self.splits["dev"]
        grid = fused.choose_weight(dev.eval_queries, dev.qrels, 100)  # on dev, never on test
        row["fusion_weight"], row["fusion_grid_dev"] = fused.weight, grid
        row["fused"] = {s: self._score(fused, s) for s in self.splits}
        return row


#: the student: the teacher's first and last layers, each FFN narrowed to its 320 most active neurons, distilled
#: with DistillCSE + the embedding term on the teacher's mined pairs plus the general science pairs
STUDENT_LAYERS = "0,5/ffn=320"
STUDENT_PAIRS = GENERAL_PAIRS
STUDENT_SETTINGS = ["embedding_weight=100", "max_steps=600", "time_budget_s=1500", "max_seq_length=128"]

#: query encoders (asymmetric retrieval): a cut of the recipe learns to embed *queries* where the recipe does
#: (``indus retriever distill --query-only``, configs/retriever/cpu-query-distill.yaml); the index keeps the
#: recipe's document vectors, so a query costs the cut's encoding only. (description, cut of the recipe). Trained on
#: the recipe's mined pairs (the train 4/5), the config's query-like science pairs and the collection's own
#: titles -> abstracts (documents only, no judgements); ``choose-student`` keeps the best dev nDCG@10 among those
#: at least ``SPEED_TARGET`` x faster per query than the recipe (latency on dev queries).
QUERY_STUDENTS: dict[str, tuple[str, str, list[str], list[Path]]] = {
    "qstudent-1l-ffn384": ("1-layer query encoder (the recipe's first layer, FFN 384)", "layers:1/ffn=384", [], []),
    "qstudent-1l-ffn768": ("1-layer query encoder (the recipe's first layer, FFN 768)", "layers:1/ffn=768", [], []),
    "qstudent-1l": ("1-layer query encoder (the recipe's first layer)", "layers:1", [], []),
    "qstudent-2l-ffn320": (
        "2-layer query encoder (the recipe's layers 0 and 5, FFN 320)",
        "layers:0,5/ffn=320",
        [],
        [],
    ),
    "qstudent-2l-ffn320-ict": (
        "2-layer query encoder (layers 0 and 5, FFN 320) + sentences of the collection's abstracts as queries "
        "(inverse cloze), up to 5,000 pairs per source, 6 epochs scheduled in the 25-minute budget (which stopped "
        "it first: see the training runs)",
        "layers:0,5/ffn=320",
        ["max_pairs_per_source=5000", "epochs=6"],
        [Path("corpus-sentences.jsonl.gz")],
    ),
    "qstudent-2l-ffn128-ict": (
        "the same with FFN 128 (faster)",
        "layers:0,5/ffn=128",
        ["max_pairs_per_source=5000", "epochs=6"],
        [Path("corpus-sentences.jsonl.gz")],
    ),
    "qstudent-2l-ffn320-ict-all": (
        "2-layer query encoder (layers 0 and 5, FFN 320) + up to 8 sentences of every abstract as queries (inverse "
        "cloze, one source per sentence rank), trained alone at 2 threads, 6 epochs scheduled in a 40-minute budget",
        "layers:0,5/ffn=320",
        ["max_pairs_per_source=5000", "epochs=6", "time_budget_s=2400"],
        [Path("corpus-sentences-all.jsonl.gz")],
    ),
    "qstudent-2l-ffn320-ict-all-seed1": (
        "the same with seed 1 (the spread of one setting: not a candidate for the student)",
        "layers:0,5/ffn=320",
        ["max_pairs_per_source=5000", "epochs=6", "time_budget_s=2400", "seed=1"],
        [Path("corpus-sentences-all.jsonl.gz")],
    ),
}
SEED_SUFFIX = "-seed"  # a query encoder trained again with another seed: its spread, not a candidate
QUERY_CONFIG = REPO / "configs" / "retriever" / "cpu-query-distill.yaml"
CORPUS_TITLES = RUNS / "corpus-titles.jsonl.gz"  # the collection's titles -> abstracts (written by prepare)
CORPUS_SENTENCES = RUNS / "corpus-sentences.jsonl.gz"  # sentences of its abstracts -> the abstract (inverse cloze)
CORPUS_SENTENCES_ALL, ALL_SENTENCES_PER_DOC = RUNS / "corpus-sentences-all.jsonl.gz", 8  # the same, more of them
KEEP_TARGET, SPEED_TARGET = 0.97, 5.0


def teacher_dir() -> Path:
    return MODELS / recipe(load_results())


def stage_choose(args: argparse.Namespace) -> None:
    """The recipe: the trained candidate with the best dev nDCG@10 (test is not looked at)."""
    saved = load_results()
    scored = {k: saved["rows"][k]["dev"]["ndcg@10"] for k in CANDIDATES if k in saved["rows"]}
    best = max(scored, key=lambda k: scored[k])
    saved["recipe"] = {"variant": best, "dev_ndcg@10": scored, "overrides": CANDIDATES[best][2]}
    save_results(saved)
    print(json.dumps(saved["recipe"]))


def stage_distill(args: argparse.Namespace) -> None:
    from indus.config import load_config
    from indus.retriever.distill import RetrieverDistillConfig, distill_retriever

    saved = load_results()
    teacher = teacher_dir()
    pairs = [str(MINED / f"{variant(recipe(saved))[1]}.jsonl.gz"), *STUDENT_PAIRS]
    cfg = load_config(
        RetrieverDistillConfig,
        REPO / "configs" / "retriever" / "cpu-distill.yaml",
        overrides=[
            f"teacher={teacher}",
            f"student=layers:{STUDENT_LAYERS}@{teacher}",
            f"teacher_cache={RUNS / 'teacher-cache'}",
            f"pairs=[{','.join(pairs)}]",
            "teacher_max_seq_length=128",
            *STUDENT_SETTINGS,
            *(args.set or []),
        ],
    )
    summary = distill_retriever(cfg, MODELS / "student", overwrite=True)
    record("runs", "student", {k: v for k, v in summary.items() if k not in ("loss_curve", "config")})


def stage_qdistill(args: argparse.Namespace) -> None:
    """Query encoders of the recipe (:data:`QUERY_STUDENTS`), one run each; the teacher's pass is cached."""
    from indus.config import load_config
    from indus.retriever.distill import RetrieverDistillConfig, distill_retriever

    saved = load_results()
    teacher = teacher_dir()
    for name in args.names or list(QUERY_STUDENTS):
        cfg = load_config(
            RetrieverDistillConfig,
            QUERY_CONFIG,
            overrides=[
                f"teacher={teacher}",
                f"student={QUERY_STUDENTS[name][1]}@{teacher}",
                f"teacher_cache={RUNS / 'teacher-cache'}",
                *QUERY_STUDENTS[name][2],
                *(args.set or []),
            ],
        )
        extra = [str(RUNS / p) for p in QUERY_STUDENTS[name][3]]
        cfg.pairs = [str(MINED / f"{variant(recipe(saved))[1]}.jsonl.gz"), *cfg.pairs, str(CORPUS_TITLES), *extra]
        summary = distill_retriever(cfg, MODELS / name, overwrite=True)
        record("runs", name, {k: v for k, v in summary.items() if k not in ("loss_curve", "config")})


INT8 = "-int8"  # NAME-int8: the query encoder of the model NAME exported int8 (torch dynamic quantization)


def int8_dir(name: str) -> Path:
    """``MODELS/NAME``'s query encoder exported int8 (``indus retriever export --format int8``), once."""
    from indus.retriever.quantize import export_int8

    out = MODELS / f"{name}{INT8}"
    if not (out / "modules.json").is_file():
        export_int8(str(MODELS / name), out, max_seq_length=MAX_LENGTH, overwrite=True)
    return out


def documents_dir(name: str) -> Path:
    """The model whose vectors the index of ``name`` holds: the recipe for a query encoder, else ``name`` itself."""
    return teacher_dir() if name in QUERY_STUDENTS else MODELS / name


LATENCY_ROUNDS, LATENCY_QUERIES, LATENCY_THREADS = 10, 100, (1, 2)


def model_dirs(saved: dict[str, Any]) -> dict[str, Path]:
    """The recipe and every student trained from it (the query encoders, the 2-layer student), and the int8 export
    of each that has one (``eval NAME-int8`` writes it; the 2-layer student's is written here)."""
    dirs = {recipe(saved): teacher_dir()}
    for name in [*QUERY_STUDENTS, "student"]:
        if (MODELS / name / "summary.json").is_file():
            dirs[name] = MODELS / name
    if "student" in dirs:
        int8_dir("student")
    for name in list(dirs):
        if (MODELS / f"{name}{INT8}" / "modules.json").is_file():
            dirs[f"{name}{INT8}"] = MODELS / f"{name}{INT8}"
    return dirs


def time_models(dirs: dict[str, Path], threads_list: tuple[int, ...]) -> tuple[dict[str, Any], float, int]:
    """``({threads: {model: median ms per query}}, others' CPU share, queries)``: each model of ``dirs`` in turn in
    each of ``LATENCY_ROUNDS`` rounds, every dev query encoded alone and searched exactly over a flat index of the
    corpus's size (random vectors of the model's width)."""
    import statistics

    import faiss
    import torch

    from indus.models import load_sentence_transformer
    from indus.retriever.bi_encoder import encode

    scorer = Scorer()
    queries = list(scorer.splits["dev"].eval_queries.values())[:LATENCY_QUERIES]
    rng = np.random.default_rng(0)
    timed = []
    for name, folder in dirs.items():
        model = load_sentence_transformer(str(folder), device="cpu", max_seq_length=MAX_LENGTH)
        dim = encode(model, queries[:1]).shape[1]
        vectors = rng.standard_normal((len(scorer.doc_ids), dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        timed.append((name, model, index))
    out: dict[str, Any] = {}
    with OthersLoad() as load:
        for threads in threads_list:
            torch.set_num_threads(threads)
            faiss.omp_set_num_threads(threads)
            times: dict[str, list[float]] = {name: [] for name, _, _ in timed}
            for _ in range(LATENCY_ROUNDS):
                for name, model, index in timed:
                    index.search(encode(model, queries[:1]), 100)  # warm-up
                    for q in queries:
                        t0 = time.perf_counter()
                        index.search(encode(model, [q]), 100)
                        times[name].append((time.perf_counter() - t0) * 1000.0)
            out[str(threads)] = {name: round(statistics.median(t), 3) for name, t in times.items()}
    return out, load.others_share, len(queries)


def stage_latency_repeat(args: argparse.Namespace) -> None:
    """The verdict's timing again, in a fresh process, for the recipe, its int8 export and the chosen student (float
    and int8 forms) only, at 1 thread: one more sample of the speed-up's spread across runs (a run's models are
    interleaved, but the recipe's time moves between processes). Appended to ``latency_repeats``."""
    saved = load_results()
    r, chosen = recipe(saved), saved["student_choice"]["variant"]
    base = chosen[: -len(INT8)] if chosen.endswith(INT8) else chosen
    dirs = {k: v for k, v in model_dirs(saved).items() if k in (r, f"{r}{INT8}", base, f"{base}{INT8}")}
    out, others_share, _ = time_models(dirs, LATENCY_THREADS[:1])
    ms = out[str(LATENCY_THREADS[0])]
    value = {"ms": ms, "speedup": {k: round(ms[r] / v, 2) for k, v in ms.items()}, "others_share": others_share}
    record("latency_repeats", f"run-{len(saved.get('latency_repeats', {})) + 1}", value)
    print(json.dumps(value))


def stage_latency(args: argparse.Namespace) -> None:
    """Per-query time of the recipe and its students, interleaved (see ``benchmarks/retriever_quality.py``'s
    ``latency``): one dev query encoded alone and searched exactly over a flat index of the corpus's size, every
    model in turn in each of the rounds; the median per model; once at each torch thread count of
    ``LATENCY_THREADS`` (one thread per query is how a server answering concurrent queries runs; the verdict
    uses it). Others' CPU share during the timing is recorded (0: the machine was ours)."""
    saved = load_results()
    out, others_share, n_queries = time_models(model_dirs(saved), LATENCY_THREADS)
    if saved.get("latency_by_threads"):  # the previous timing run stays, for comparison (the machine drifts)
        saved["latency_earlier"] = {
            k: saved.get(k) for k in ("latency_by_threads", "latency_method", "latency_others_share", "latency_note")
        }
    saved["latency_note"] = args.note
    saved["latency_ms"] = out[str(LATENCY_THREADS[0])]  # the verdict's
    saved["latency_by_threads"] = out
    saved["latency_others_share"] = others_share
    saved["latency_method"] = (
        f"interleaved: {LATENCY_ROUNDS} rounds x {n_queries} dev queries, one at a time, at "
        + " and ".join(f"{t} torch thread{'s' if t > 1 else ''}" for t in LATENCY_THREADS)
    )
    save_results(saved)
    print(json.dumps(out))


def student_keys() -> list[str]:
    """The query encoders, float and int8 (``NAME-int8``), the candidates for the student (not the seed reruns)."""
    names = [k for k in QUERY_STUDENTS if SEED_SUFFIX not in k]
    return [*names, *(f"{k}{INT8}" for k in names)]


def stage_choose_student(args: argparse.Namespace) -> None:
    """The query encoder: the best dev nDCG@10 among those (float or int8) at least ``SPEED_TARGET`` x faster per
    query than the recipe as trained (float) (test is not looked at); none qualifies: the fastest."""
    saved = load_results()
    lat, rows, r = saved.get("latency_ms", {}), saved["rows"], recipe(saved)
    timed = {k: lat[r] / lat[k] for k in student_keys() if k in rows and k in lat}
    if not timed:
        raise SystemExit("score (eval) and time (latency) the query encoders first")
    fast = [k for k, v in timed.items() if v >= SPEED_TARGET]
    best = max(fast, key=lambda k: rows[k]["dev"]["ndcg@10"]) if fast else max(timed, key=lambda k: timed[k])
    saved["student_choice"] = {
        "variant": best,
        "speedup": {k: round(v, 2) for k, v in timed.items()},
        "dev_ndcg@10": {k: rows[k]["dev"]["ndcg@10"] for k in timed},
    }
    save_results(saved)
    print(json.dumps(saved["student_choice"]))


def stage_eval(args: argparse.Namespace) -> None:
    scorer = Scorer()
    for name in args.names:
        if name == "bm25":
            row = scorer.bm25_row()
        elif name.endswith(INT8):  # the int8 query encoder over the float model's document vectors
            base = name[: -len(INT8)]
            row = scorer.dense_row(str(documents_dir(base)), query_model=str(int8_dir(base)))
        elif name in QUERY_STUDENTS:  # the student encodes the queries, the recipe's vectors are the documents
            row = scorer.dense_row(str(teacher_dir()), query_model=str(MODELS / name))
        else:
            spec = "minilm" if name == "minilm" else str(MODELS / name)
            row = scorer.dense_row(spec)
        record("rows", name, row)


def stage_render(args: argparse.Namespace) -> None:
    atomic_write_text(OUT_MD, render(load_results()))


def _f(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))


NAMES = {
    "bm25": "BM25 (bm25s, Lucene k1 1.2 b 0.75)",
    "minilm": "minilm (all-MiniLM-L6-v2), no training",
    **{k: f"minilm + {v[0]}" for k, v in CANDIDATES.items()},
    **{k: f"minilm + {v[0]}" for k, v in ABLATIONS.items()},
    "student": f"2-layer DistillCSE student (layers {STUDENT_LAYERS}, + embedding term; its teacher: below)",
    "student-int8": "the student, int8 query encoder (torch dynamic quantization) over its float document vectors",
    **{
        f"{k}{INT8}": f"minilm + {v[0]}: int8 query encoder over its float document vectors"
        for k, v in CANDIDATES.items()
    },
    **{k: f"{v[0]}, over the recipe's document vectors" for k, v in QUERY_STUDENTS.items()},
    **{f"{k}{INT8}": f"the same exported int8 (`indus retriever export --format int8`): `{k}`" for k in QUERY_STUDENTS},
}


def render(saved: dict[str, Any]) -> str:
    rows, runs = saved.get("rows", {}), saved.get("runs", {})
    by_threads = saved.get("latency_by_threads", {})
    lines = [
        "# Stage 2 with mined hard negatives: SciFact",
        "",
        f"Machine: {saved.get('machine', 'unknown')}",
        "",
        "Reproduce: the stages in the docstring of `benchmarks/retriever_stage2.py` (prepare, mine, train the "
        "candidates, eval, choose, train the ablations, distill, qdistill, eval, latency, choose-student).",
        "",
        "Trained on 4/5 of SciFact's train queries (646 held as train, 163 as dev by `indus data holdout`, seed 0); "
        "test is the published 300 queries, never used to choose anything. "
        f"{len(CANDIDATES)} candidate recipes were trained and the one with the best dev nDCG@10 is the recipe "
        "(`configs/retriever/cpu-stage2.yaml` carries its "
        "settings); the ablations each remove one part from the cheapest candidate (`mined-t05`). "
        "The fusion weight (convex combination with BM25, min-max "
        "normalised scores) is chosen on dev. Documents are scored at 256 tokens, trained at 128. "
        "The query encoders are cuts of the recipe trained to embed queries where the recipe does "
        "(`indus retriever distill --query-only`, `configs/retriever/cpu-query-distill.yaml`) and scored over the "
        "recipe's own document vectors (`indus retriever index --model RECIPE --query-model STUDENT`); each is "
        "also exported int8 (`NAME-int8`: `indus retriever export --format int8`, torch dynamic quantization of "
        "its linear layers), and the one reported against the target is chosen on dev among all of them (float or "
        f"int8) at least {SPEED_TARGET:g}x faster than the recipe as trained (float). An int8 student's line also "
        "gives the like-for-like ratio, against the recipe's own int8 export.",
        "",
        "| model | dev nDCG@10 | test nDCG@10 | test Recall@100 | test MRR@10 | fused with BM25: weight (dev), "
        "test nDCG@10 | training wall (min) | latency ms/query, "
        + " / ".join(f"{t} thread{'s' if int(t) > 1 else ''}" for t in by_threads)
        + " |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in [k for k in NAMES if k in rows] + [k for k in rows if k not in NAMES]:
        row, run = rows[key], runs.get(key, {})
        fused = row.get("fused")
        lines.append(
            "| "
            + " | ".join(
                [
                    NAMES.get(key, key),
                    _f(row["dev"]["ndcg@10"]),
                    _f(row["test"]["ndcg@10"]),
                    _f(row["test"]["recall@100"]),
                    _f(row["test"]["mrr@10"]),
                    f"{row['fusion_weight']:.1f}, {_f(fused['test']['ndcg@10'])}" if fused else "n/a",
                    f"{run['wall_s'] / 60:.1f}" if run.get("wall_s") else "",
                    " / ".join(f"{lat[key]:.2f}" for lat in by_threads.values() if key in lat),
                ]
            )
            + " |"
        )
    if saved.get("latency_method"):
        lines += [
            "",
            f"Latency (the recipe and its students): {saved['latency_method']}; each query encoded alone and "
            "searched exactly over a flat index of 5,183 vectors of the model's width; the median. Other processes "
            f"used {saved.get('latency_others_share')} of the machine's CPU time while it was timed.",
        ]
    earlier = saved.get("latency_earlier")
    if earlier and saved.get("recipe"):
        r, ratios = recipe(saved), []
        for key in [k for k in student_keys() if k in rows]:
            then, now = earlier["latency_by_threads"].get("1", {}), by_threads.get("1", {})
            if key in then and key in now and r in then and r in now:
                ratios.append(f"{key} {then[r] / then[key]:.2f}x -> {now[r] / now[key]:.2f}x")
        lines += [
            "",
            f"This timing run: {saved.get('latency_note') or 'no note'}. The previous one "
            f"({earlier.get('latency_note') or 'no note'}; others' CPU share {earlier.get('latency_others_share')}) "
            f"timed the recipe at {earlier['latency_by_threads']['1'].get(r)} ms per query at 1 thread; "
            "speed-ups then -> now: " + ", ".join(ratios) + ".",
        ]
    lines += targets(saved)
    lines += ablation_table(rows)
    if saved.get("mines"):
        lines += [
            "",
            "## Mining (minilm, ranks 10-50 of the top 50; one negative per pair, three in `-n3`)",
            "",
            "| file | pairs | pairs kept (rows) | candidates in range | removed by the margin filter |",
            "|---|---|---|---|---|",
        ]
        for name, m in saved["mines"].items():
            lines.append(
                f"| {name} | {m['pairs']} | {m['rows']} | {m['in_range']} | {m['removed_by_margin']} "
                f"({m['removed_fraction']:.1%}) |"
            )
        lines += ["", "A pair left with no candidate after the filter is dropped (the filter's cost in pairs)."]
    if runs:
        lines += [
            "",
            "## Training runs",
            "",
            "Wall times vary with the machine's load (a shared VM: `mined` and `mined-t05` ran the same 63 steps "
            "in 14.4 and 6.2 minutes). The recipe's row is its retraining with the machine to itself (2 threads; the "
            "same final loss and scores as its first, loaded run); the last ablations and the query encoders ran side "
            "by side, one thread each (a query encoder's wall is its training loop; the teacher's pass is "
            "`teacher_s`, cached across runs).",
            "",
            "| run | steps | pairs seen | wall (s) | final loss | stop |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in runs.items():
            lines.append(
                f"| {name} | {r.get('steps')} | {r.get('pairs_seen')} | {r.get('wall_s')} | "
                f"{_f(r.get('final_loss'))} | {r.get('stop_reason', '')} |"
            )
    return "\n".join(lines) + "\n"


#: what each part buys: (the part, the run with it, the run without it), differences in nDCG@10
PARTS = [
    ("mined negatives (vs judged pairs with in-batch negatives only)", ABLATION_BASE, "pairs"),
    ("the margin filter, 1 negative per pair (on vs off)", ABLATION_BASE, "nofilter"),
    ("the margin filter, 3 negatives per pair (on vs off)", "mined-t05-n3", "mined-t05-n3-nofilter"),
    ("3 negatives per pair instead of 1", "mined-t05-n3", ABLATION_BASE),
    ("more pairs: + 2,000 general science pairs", "more-pairs", ABLATION_BASE),
    ("stage 1 -> stage 2 (vs stage 2 from minilm)", "stage1-stage2", ABLATION_BASE),
    ("stage 2 (vs stage 1 alone)", "stage1-stage2", "stage1"),
]


def ablation_table(rows: dict[str, Any]) -> list[str]:
    """What each part of the recipe buys: the nDCG@10 of a run with it minus the run without it, dev and test."""
    have = [(what, a, b) for what, a, b in PARTS if a in rows and b in rows]
    if not have:
        return []
    lines = [
        "",
        "## What each part buys",
        "",
        "One change at a time, one seed each (dev has 163 queries, test 300); the seed spread of the base run is "
        "below the table.",
        "",
        "| part | with | without | dev nDCG@10 difference | test nDCG@10 difference |",
        "|---|---|---|---|---|",
    ]
    for what, a, b in have:
        d = [rows[a][s]["ndcg@10"] - rows[b][s]["ndcg@10"] for s in ("dev", "test")]
        lines.append(f"| {what} | `{a}` | `{b}` | {d[0]:+.4f} | {d[1]:+.4f} |")
    seeds = [k for k in (ABLATION_BASE, *(f"{ABLATION_BASE}-seed{i}" for i in (1, 2))) if k in rows]
    if len(seeds) > 1:
        spread = {s: [rows[k][s]["ndcg@10"] for k in seeds] for s in ("dev", "test")}
        lines += [
            "",
            f"Seed spread of `{ABLATION_BASE}` itself ({len(seeds)} seeds, the same data): dev nDCG@10 "
            + ", ".join(f"{v:.4f}" for v in spread["dev"])
            + f" (range {max(spread['dev']) - min(spread['dev']):.4f}); test "
            + ", ".join(f"{v:.4f}" for v in spread["test"])
            + f" (range {max(spread['test']) - min(spread['test']):.4f}). A difference inside that range is a tie.",
        ]
    return lines


def targets(saved: dict[str, Any]) -> list[str]:
    """The issue's targets, each stated as met or missed from the numbers above."""
    rows = saved.get("rows", {})
    if "recipe" not in saved:
        return []
    r = recipe(saved)
    c = saved["recipe"]["dev_ndcg@10"]
    out = [
        "",
        "## The recipe and the targets",
        "",
        f"- chosen on dev: `{r}` ({CANDIDATES[r][0]}); dev nDCG@10 of the candidates: "
        + ", ".join(f"{k} {v:.4f}" for k, v in c.items()),
    ]
    t, wall = rows[r]["test"]["ndcg@10"], saved["runs"][r]["wall_s"] / 60
    out.append(
        f"- trained on this machine in {wall:.1f} minutes (<= 60), test nDCG@10 >= 0.72: {t:.4f} -> "
        + ("met" if t >= 0.72 and wall <= 60 else "MISSED")
    )
    if "minilm" in rows and "bm25" in rows:
        out.append(
            f"- per collection (the data folder has one BEIR collection, SciFact): the recipe's test nDCG@10 is "
            f"{t - rows['minilm']['test']['ndcg@10']:+.4f} over minilm and {t - rows['bm25']['test']['ndcg@10']:+.4f} "
            "over BM25"
        )
    f = rows[r]["fused"]["test"]["ndcg@10"]
    out.append(
        f"- fused with BM25 (weight {rows[r]['fusion_weight']:.1f}, chosen on dev) >= 0.73: {f:.4f} -> "
        + ("met" if f >= 0.73 else "MISSED")
    )
    lat = saved.get("latency_ms", {})
    chosen = saved.get("student_choice", {}).get("variant")
    r8 = f"{r}{INT8}"
    for key in [*student_keys(), "student", "student-int8"]:
        if key not in rows or key not in lat or r not in lat:
            continue
        keep = {s: rows[key][s]["ndcg@10"] / rows[r][s]["ndcg@10"] for s in ("test", "dev")}
        speed = lat[r] / lat[key]
        ok = keep["test"] >= KEEP_TARGET and speed >= SPEED_TARGET
        tag = " (chosen on dev: the result)" if key == chosen else ""
        like = ""
        if key.endswith(INT8) and r8 in rows and r8 in lat:  # like for like: against the recipe's own int8 export
            like = (
                f"; against the recipe's own int8 export (test {rows[r8]['test']['ndcg@10']:.4f}, "
                f"{lat[r] / lat[r8]:.2f}x faster than the float recipe) it keeps "
                f"{rows[key]['test']['ndcg@10'] / rows[r8]['test']['ndcg@10']:.1%} at {lat[r8] / lat[key]:.2f}x"
            )
        out.append(
            f"- {key}{tag}: {keep['test']:.1%} of the recipe's test nDCG@10 (dev: {keep['dev']:.1%}) at "
            f"{speed:.2f}x less time per query than the recipe (target >= {KEEP_TARGET:.0%} at >= {SPEED_TARGET:g}x) "
            f"-> {'met' if ok else 'MISSED'}{like}"
        )
    repeats = saved.get("latency_repeats", {})
    if chosen and repeats:
        ups = [v["speedup"][chosen] for v in repeats.values() if chosen in v["speedup"]]
        r8ups = [v["speedup"][r8] for v in repeats.values() if r8 in v["speedup"]]
        out.append(
            f"- the chosen query encoder's speed-up in {len(ups)} repeated timing runs (`latency-repeat`: fresh "
            f"processes, the recipe, its int8 export and the chosen's float and int8 forms, 1 thread): "
            + ", ".join(f"{u:.2f}x" for u in ups)
            + f" (median {float(np.median(ups)):.2f}x, lowest {min(ups):.2f}x); the recipe's int8 export: "
            + ", ".join(f"{u:.2f}x" for u in r8ups)
        )
    for key in [k for k in QUERY_STUDENTS if SEED_SUFFIX in k and k in rows]:
        base = key.split(SEED_SUFFIX)[0]
        for form in ("", INT8):
            if f"{base}{form}" in rows and f"{key}{form}" in rows:
                a, b = rows[f"{base}{form}"], rows[f"{key}{form}"]
                out.append(
                    f"- seed spread of `{base}{form}` (seeds 0 and 1): dev {a['dev']['ndcg@10']:.4f} / "
                    f"{b['dev']['ndcg@10']:.4f}, test {a['test']['ndcg@10']:.4f} / {b['test']['ndcg@10']:.4f} "
                    f"({b['test']['ndcg@10'] / rows[r]['test']['ndcg@10']:.1%} of the recipe with seed 1)"
                )
    if chosen:
        sc = saved["student_choice"]
        out.append(
            "- the query encoder was chosen among "
            + ", ".join(f"{k} (dev {sc['dev_ndcg@10'][k]:.4f}, {sc['speedup'][k]:.2f}x)" for k in sc["speedup"])
            + f": the best dev nDCG@10 at >= {SPEED_TARGET:g}x"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    stages = [
        "prepare",
        "mine",
        "train",
        "choose",
        "distill",
        "qdistill",
        "latency",
        "latency-repeat",
        "choose-student",
        "eval",
        "render",
    ]
    parser.add_argument("stage", choices=stages)
    parser.add_argument("names", nargs="*")
    parser.add_argument("--set", action="append", help="config override for train (key=value)")
    parser.add_argument("--note", help="latency: what changed since the previous timing run (kept in the results)")
    args = parser.parse_args()
    {
        "prepare": stage_prepare,
        "mine": stage_mine,
        "train": stage_train,
        "choose": stage_choose,
        "distill": stage_distill,
        "qdistill": stage_qdistill,
        "choose-student": stage_choose_student,
        "latency": stage_latency,
        "latency-repeat": stage_latency_repeat,
        "eval": stage_eval,
        "render": stage_render,
    }[args.stage](args)


if __name__ == "__main__":
    main()
