"""Named-entity recognition: token-classification fine-tuning scored by strict entity-level F1.

The objective is per-token cross-entropy over the IOB2 labels of a CoNLL dataset (``O``, ``B-T``, ``I-T`` per type
T), applied to the **first subword** of every word; the other subwords and the special tokens carry the label
-100 and are ignored by the loss. At prediction time a word's tag is the prediction of its first subword; the
other subwords' predictions are ignored. Words are mapped to subwords with a fast tokenizer's ``word_ids``
(``is_split_into_words=True``). Byte-level BPE tokenizers (RoBERTa, INDUSBPE) are switched to
``add_prefix_space=True`` first, so that every word is encoded as it is inside running text (``Ġword``) rather
than glued to its left neighbour; WordPiece (BERT, MiniLM) needs nothing.

A sentence longer than ``max_length`` subwords (special tokens included) is **split** at word boundaries into
consecutive windows that fit, both for training and for scoring; the predictions of a sentence's windows are
joined back before scoring, so no word is dropped. Splits are counted (``train_sentences_split``,
``eval_sentences_split``); a single word longer than a window keeps only the subwords that fit beside the special
tokens (``words_truncated``; its label sits on the first one, so it is still predicted), and a word the tokenizer
turns into no subword at all (e.g. a lone zero-width space) is predicted ``O`` (``words_without_subwords``).

Scores are seqeval's entity-level precision, recall and F1 in **strict** mode with the IOB2 scheme (an entity
counts only when its type and both boundaries match, and a predicted ``I-`` without its ``B-`` is not an entity),
micro-averaged over entities, plus per-type F1; each is the mean over ``seeds`` fine-tuning runs, ``*_std`` the
sample standard deviation (0 for one run). Each run re-initialises the model (the classifier head, or all weights
for ``random:`` models) and reshuffles the data with its own seed; the training and evaluation subsets
(``max_train_sentences``, ``max_eval_sentences``) are drawn once with seed 0 and shared by all runs and models.

The recipe is that of BERT's NER fine-tuning (Devlin et al., 2018, arXiv 1810.04805) as used by INDUS
(arXiv 2405.10725) on BC5CDR and the other BLURB sets.

Example
-------
>>> evaluator = NEREvaluator(seeds=1, epochs=1, max_train_sentences=200, max_eval_sentences=100)
>>> result = evaluator.evaluate("minilm", "bc5cdr")  # doctest: +SKIP
>>> result["primary_metric"], result["f1"] > 0.5  # doctest: +SKIP
('f1', True)
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indus.data.conll import Sentence, load_ner_dataset, write_conll
from indus.errors import IndusError
from indus.evaluation.finetune import Context, FinetuneEvaluator, Part, autocast, mean_std, pad_batch, single_label

IGNORE = -100


# ------------------------------------------------------------------------------------------ tokenization


def _prefix_space(node: Any) -> bool:
    """Make byte-level / metaspace pre-tokenizers treat every pre-split word as preceded by a space."""
    changed = False
    if isinstance(node, dict):
        if node.get("type") == "ByteLevel" and node.get("add_prefix_space") is False:
            node["add_prefix_space"] = True
            changed = True
        if node.get("type") == "Metaspace" and node.get("prepend_scheme") == "first":
            node["prepend_scheme"] = "always"
            changed = True
        for child in node.get("pretokenizers") or []:
            changed |= _prefix_space(child)
    return changed


def word_tokenizer(tokenizer: Any) -> Any:
    """``tokenizer``, made safe for ``is_split_into_words=True`` (in place).

    A byte-level BPE that does not add a prefix space would encode the words of a pre-split sentence as if they
    were glued together (``"wor" "ld"`` instead of ``"Ġworld"``); its pre-tokenizer is switched to
    ``add_prefix_space=True`` (``Metaspace`` to prepend ``▁`` to every word). Slow tokenizers have no
    ``word_ids`` and are refused.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise IndusError(f"{type(tokenizer).__name__}: NER needs a fast (Rust) tokenizer for word alignment")
    backend = tokenizer.backend_tokenizer
    state = json.loads(backend.to_str())
    if _prefix_space(state.get("pre_tokenizer")):
        from tokenizers import Tokenizer

        backend.pre_tokenizer = Tokenizer.from_str(json.dumps(state)).pre_tokenizer
        if hasattr(tokenizer, "add_prefix_space"):
            tokenizer.add_prefix_space = True
    return tokenizer


@dataclass(frozen=True)
class Window:
    """One model input: subword ids, their labels (-100 except first subwords) and the word each first subword
    belongs to (index in its sentence; -1 elsewhere)."""

    input_ids: list[int]
    labels: list[int]
    word_index: list[int]
    sentence: int


def _window(
    ids: list[int], word_ids: list[int | None], sentence: Sentence, offset: int, index: int, label2id: dict[str, int]
) -> Window:
    labels, words = [], []
    prev: int | None = None
    for w in word_ids:
        if w is None or w == prev:
            labels.append(IGNORE)
            words.append(-1)
        else:
            labels.append(label2id[sentence.tags[offset + w]])
            words.append(offset + w)
        prev = w
    return Window(list(ids), labels, words, index)


def _chunks(pieces: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Greedy word ranges ``[start, end)`` whose subword counts sum to at most ``budget`` (a longer single word
    gets a range of its own)."""
    out, start, total = [], 0, 0
    for j, n in enumerate(pieces):
        if j > start and total + n > budget:
            out.append((start, j))
            start, total = j, 0
        total += n
    out.append((start, len(pieces)))
    return out


def encode_sentences(
    tokenizer: Any, sentences: Sequence[Sentence], label2id: dict[str, int], max_length: int
) -> tuple[list[Window], dict[str, int]]:
    """Tokenize sentences into windows of at most ``max_length`` subwords, labelling first subwords.

    Returns
    -------
    windows, stats
        ``stats``: ``sentences_split`` (sentences cut into several windows), ``words_truncated`` (words longer
        than a window) and ``words_without_subwords``.
    """
    words = [list(s.tokens) for s in sentences]
    enc = tokenizer(words, is_split_into_words=True, truncation=False)
    windows: list[Window] = []
    stats = Counter(sentences_split=0, words_truncated=0, words_without_subwords=0)
    for i, sentence in enumerate(sentences):
        ids, word_ids = enc["input_ids"][i], enc.word_ids(i)
        pieces = Counter(w for w in word_ids if w is not None)
        stats["words_without_subwords"] += len(sentence) - len(pieces)
        if len(ids) <= max_length:
            windows.append(_window(ids, word_ids, sentence, 0, i, label2id))
            continue
        stats["sentences_split"] += 1
        budget = max_length - sum(w is None for w in word_ids)  # room left by the special tokens
        for start, end in _chunks([pieces.get(j, 0) for j in range(len(sentence))], budget):
            if end - start == 1 and pieces.get(start, 0) > budget:
                stats["words_truncated"] += 1
            sub = tokenizer(words[i][start:end], is_split_into_words=True, truncation=True, max_length=max_length)
            windows.append(_window(sub["input_ids"], sub.word_ids(), sentence, start, i, label2id))
    return windows, dict(stats)


def _collate(pad_id: int, device: Any, labels: bool):
    def collate(batch: list[Window]) -> dict[str, Any]:
        ids, mask = pad_batch([w.input_ids for w in batch], pad_id)  # (B, L), (B, L)
        out = {"input_ids": ids, "attention_mask": mask}
        if labels:
            out["labels"], _ = pad_batch([w.labels for w in batch], IGNORE)  # (B, L)
        return {k: v.to(device) for k, v in out.items()}

    return collate


def predict_tags(
    model: Any,
    windows: Sequence[Window],
    lengths: Sequence[int],
    id2label: dict[int, str],
    *,
    batch_size: int = 64,
    pad_id: int = 0,
    device: Any = "cpu",
    bf16: bool = False,
    progress: bool = False,
) -> list[list[str]]:
    """The predicted IOB2 tag of every word (its first subword's argmax), sentence by sentence.

    Windows are scored in order of length (little padding) under ``torch.inference_mode``; words that no window
    covers are ``O``.
    """
    import torch
    from tqdm.auto import tqdm

    preds = [["O"] * n for n in lengths]
    order = sorted(range(len(windows)), key=lambda i: len(windows[i].input_ids))
    collate = _collate(pad_id, device, labels=False)
    model.eval()
    with torch.inference_mode(), autocast(device, bf16):
        for start in tqdm(range(0, len(order), batch_size), desc="ner predict", disable=not progress, leave=False):
            batch = [windows[i] for i in order[start : start + batch_size]]
            best = model(**collate(batch)).logits.argmax(-1).cpu().tolist()  # (B, L)
            for row, w in zip(best, batch, strict=True):
                for pos, word in enumerate(w.word_index):
                    if word >= 0:
                        preds[w.sentence][word] = id2label[row[pos]]
    return preds


# ------------------------------------------------------------------------------------------------ metrics


def ner_metrics(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Strict entity-level scores (seqeval, IOB2): micro ``precision``, ``recall``, ``f1`` and ``per_type``
    {type: {precision, recall, f1, support}}."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    true, pred = [list(t) for t in y_true], [list(p) for p in y_pred]
    kw: dict[str, Any] = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    report = classification_report(true, pred, output_dict=True, **kw)
    per_type = {
        t: {
            "precision": float(r["precision"]),
            "recall": float(r["recall"]),
            "f1": float(r["f1-score"]),
            "support": int(r["support"]),
        }
        for t, r in report.items()
        if not t.endswith(" avg")
    }
    return {
        "precision": float(precision_score(true, pred, **kw)),
        "recall": float(recall_score(true, pred, **kw)),
        "f1": float(f1_score(true, pred, **kw)),
        "per_type": per_type,
    }


# ---------------------------------------------------------------------------------------------- evaluator


@dataclass(kw_only=True)
class NEREvaluator(FinetuneEvaluator):
    """Token-classification fine-tuning and strict entity-level F1 (see the module docstring).

    Parameters
    ----------
    seeds
        Fine-tuning runs (seeds ``seed .. seed + seeds - 1``); metrics are the mean, ``*_std`` the sample std.
    seed
        First seed.
    epochs, batch_size, lr, weight_decay, warmup_ratio, max_steps
        Optimisation (:class:`~indus.evaluation.finetune.FinetuneSettings`); batches group sentences of similar
        length.
    max_length
        Subwords per window, special tokens included; longer sentences are split (see the module docstring).
    max_train_sentences, max_eval_sentences
        Use a fixed random subset (seed 0, the same for every model and run) of this many sentences.
    split, train_split
        Evaluation and training splits (``train``, ``dev``, ``test``).
    scheme
        Tag scheme of the files: ``auto`` (detect, repair) or ``IOB1``/``IOB2``/``BIOES``/``BILOU`` (strict).
    eval_batch_size
        Windows per forward pass when predicting.
    bf16
        Run forward passes (training and prediction) under bfloat16 autocast; about twice as fast on CPUs with
        AVX-512 BF16 or AMX (weights and optimiser state stay fp32).
    predictions_path
        Write ``token gold predicted`` CoNLL lines here; with several seeds one file per seed
        (``NAME.seedS.EXT``).
    device
        ``cpu``, ``cuda``, ...; ``None``: CUDA when available.
    progress
        Show progress bars.
    """

    task = "ner"
    data_kind = "ner"
    head = "AutoModelForTokenClassification"
    primary_metric = "f1"
    metrics = ("f1", "precision", "recall")
    limits = ("max_train_sentences", "max_eval_sentences")

    max_length: int = 256
    max_train_sentences: int | None = None
    max_eval_sentences: int | None = None
    scheme: str = "auto"
    predictions_path: str | Path | None = None

    def __post_init__(self) -> None:
        self.check([f"max_length must be >= 8, got {self.max_length}"] if self.max_length < 8 else [])

    def load_data(self, path: Path) -> Any:
        return load_ner_dataset(path, self.scheme)

    def load_tokenizer(self, ref: Any) -> Any:
        return word_tokenizer(super().load_tokenizer(ref))

    def encode(self, tokenizer: Any, items: list[Any], data: Any) -> Part:
        label2id = {label: i for i, label in enumerate(data.labels)}
        windows, stats = encode_sentences(tokenizer, items, label2id, self.max_length)
        return Part(items, windows, stats)

    def collate(self, ctx: Context, labels: bool):
        return _collate(ctx.pad_id, ctx.device, labels=labels)

    def training_features(self, ctx: Context, seed: int) -> tuple[list[Window], list[int]]:
        windows = ctx.train.features
        return windows, [len(w.input_ids) for w in windows]

    def predict(self, net: Any, ctx: Context, part: Part) -> list[list[str]]:
        return predict_tags(
            net,
            part.features,
            [len(s) for s in part.items],
            dict(enumerate(ctx.data.labels)),
            batch_size=self.eval_batch_size,
            pad_id=ctx.pad_id,
            device=ctx.device,
            bf16=self.bf16,
            progress=self.progress,
        )

    def score(self, ctx: Context, part: Part, preds: list[list[str]]) -> dict[str, Any]:
        return ner_metrics([list(s.tags) for s in part.items], preds)

    def collapsed(self, ctx: Context, part: Part, preds: list[list[str]]) -> bool:
        return single_label([t for p in preds for t in p], [t for s in part.items for t in s.tags])

    def aggregate(self, runs: list[dict[str, Any]], ctx: Context) -> dict[str, Any]:
        result = super().aggregate(runs, ctx)
        result["per_type"] = {}
        for typ in ctx.data.entity_types:
            rows = [r["per_type"].get(typ, {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}) for r in runs]
            f1, f1_std = mean_std([r["f1"] for r in rows])
            result["per_type"][typ] = {
                "f1": f1,
                "f1_std": f1_std,
                "precision": mean_std([r["precision"] for r in rows])[0],
                "recall": mean_std([r["recall"] for r in rows])[0],
                "support": rows[0]["support"],
            }
        return result

    def describe(self, ctx: Context, runs: list[dict[str, Any]]) -> dict[str, Any]:
        train, evals = ctx.train, ctx.eval
        return {
            "scheme": ctx.data.scheme,
            "labels": ctx.data.labels,
            "train_sentences": len(train.items),
            "train_sentences_total": ctx.train_total,
            "eval_sentences": len(evals.items),
            "eval_sentences_total": ctx.eval_total,
            "eval_entities": sum(t.startswith("B-") for s in evals.items for t in s.tags),
            "train_windows": len(train.features),
            "eval_windows": len(evals.features),
            "train_sentences_split": train.stats["sentences_split"],
            "eval_sentences_split": evals.stats["sentences_split"],
            "words_truncated": train.stats["words_truncated"] + evals.stats["words_truncated"],
            "words_without_subwords": train.stats["words_without_subwords"] + evals.stats["words_without_subwords"],
        }

    def write_predictions(self, ctx: Context, preds: list[list[str]], seed: int) -> None:
        if self.predictions_path:
            write_conll(
                self.seed_path(seed, ".conll"),
                ((s.tokens, s.tags, p) for s, p in zip(ctx.eval.items, preds, strict=True)),
            )
