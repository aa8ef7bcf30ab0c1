"""Train INDUSBPE: a byte-level BPE (GPT-2 / RoBERTa style) on a domain corpus.

The paper's INDUSBPE (arXiv 2405.10725) is uncased with RoBERTa's vocabulary size, 50,265. The output folder
loads with ``AutoTokenizer.from_pretrained(dir)``, adds ``<s> ... </s>`` like RoBERTa, and keeps the lower-casing
(transformers 5's ``RobertaTokenizer`` rebuilds its pipeline from vocab and merges and would drop the normaliser,
so the folder is written as a plain ``tokenizer.json`` with its full pipeline).

Example
-------
>>> import pathlib, tempfile
>>> corpus = pathlib.Path(tempfile.mkdtemp()) / "corpus.txt"
>>> _ = corpus.write_text("The solar wind shapes the magnetosphere; solar flares heat the corona. " * 50)
>>> tok = train_bpe([corpus], vocab_size=300, out_dir=corpus.parent / "bpe", show_progress=False)
>>> tok("Solar wind")["input_ids"][0] == tok.bos_token_id, len(tok) <= 300
(True, True)
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from indus.cards import tokenizer_card
from indus.data.corpus import iter_texts
from indus.errors import IndusError
from indus.models import load_tokenizer
from indus.outdir import prepare_output_dir, publish_directory, staging_dir

#: RoBERTa's special tokens, in id order 0..4.
ROBERTA_SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


class _Texts:
    """The training texts of corpus files, folders or names (a folder's training files only: held-out text must
    stay unseen), counting the non-blank ones as the trainer reads them."""

    def __init__(self, corpus: Sequence[str | Path], max_docs: int | None) -> None:
        self.corpus = corpus
        self.max_docs = max_docs
        self.read = self.non_blank = 0

    def __iter__(self) -> Iterator[str]:
        for path in self.corpus:
            for text in iter_texts(path, limit=None if self.max_docs is None else self.max_docs - self.read):
                self.read += 1
                self.non_blank += bool(text.strip())
                yield text
            if self.max_docs is not None and self.read >= self.max_docs:
                return


def build_bpe_tokenizer(
    texts: Iterator[str],
    vocab_size: int,
    *,
    lowercase: bool = True,
    min_frequency: int = 2,
    show_progress: bool = False,
):
    """Train a ``tokenizers.Tokenizer``: byte-level BPE, RoBERTa specials (ids 0..4) and post-processor."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # <mask> swallows the space before it, as in RoBERTa, so "the <mask>." masks the word with its space.
    specials = [AddedToken(t, special=True, normalized=False, lstrip=(t == "<mask>")) for t in ROBERTA_SPECIAL_TOKENS]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    ids = [tok.token_to_id(t) for t in ROBERTA_SPECIAL_TOKENS]
    if ids != list(range(len(ROBERTA_SPECIAL_TOKENS))):
        raise RuntimeError(f"special tokens got ids {ids}, expected 0..4")
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=False
    )
    return tok


def wrap_tokenizer(tok, model_max_length: int = 512):
    """A transformers fast tokenizer around a trained ``tokenizers.Tokenizer`` with RoBERTa's special roles."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=model_max_length,
    )


def train_bpe(
    corpus: Sequence[str | Path],
    vocab_size: int = 50_265,
    *,
    out_dir: str | Path,
    lowercase: bool = True,
    max_docs: int | None = None,
    min_frequency: int = 2,
    model_max_length: int = 512,
    show_progress: bool = True,
    overwrite: bool = False,
):
    """Train INDUSBPE on ``corpus`` files or folders and save it to ``out_dir`` with a model card.

    ``out_dir`` follows the output-folder convention of :mod:`indus.outdir`: a non-empty folder needs
    ``overwrite`` (files of the same names are replaced, other files are kept).

    Parameters
    ----------
    corpus
        Corpus files, folders or dataset names (JSON lines with ``text``, or plain text; ``.gz`` allowed); a
        folder gives its training files only (``corpus``: ``train.jsonl.gz``, never ``valid.jsonl.gz``).
    vocab_size
        Vocabulary size including the 5 special tokens (the paper: 50,265).
    lowercase
        Lower-case before tokenising (INDUSBPE is uncased).
    max_docs
        Train on the first ``max_docs`` documents only.
    overwrite
        Write into a non-empty ``out_dir``.

    Returns
    -------
    The tokenizer loaded back from ``out_dir`` with ``AutoTokenizer``, checked for size and special tokens.
    """
    if vocab_size < 256 + len(ROBERTA_SPECIAL_TOKENS):
        raise IndusError(f"--vocab-size {vocab_size}: a byte-level BPE needs at least 261 (256 bytes + 5 specials)")
    if not corpus:
        raise IndusError("no corpus given (--corpus PATH)")
    if max_docs is not None and max_docs < 1:
        raise IndusError(f"--max-docs {max_docs}: expected at least 1")
    texts = _Texts(corpus, max_docs)
    tok = build_bpe_tokenizer(
        iter(texts), vocab_size, lowercase=lowercase, min_frequency=min_frequency, show_progress=show_progress
    )
    if texts.non_blank == 0:
        what = f"{texts.read} texts, all blank" if texts.read else "no texts"
        raise IndusError(
            f"{', '.join(map(str, corpus))}: nothing to train a tokenizer on ({what}); expected JSON "
            "lines with a non-empty 'text' field, or lines of text"
        )
    out = prepare_output_dir(out_dir, command="tokenizer train", overwrite=overwrite)
    tmp = staging_dir(out.path)
    try:
        hf = wrap_tokenizer(tok, model_max_length)
        hf.save_pretrained(tmp)
        loaded = load_tokenizer(tmp)
        check_roberta_tokenizer(loaded, tok.get_vocab_size(), where=str(out_dir))
        settings = {
            "vocab_size": vocab_size,
            "lowercase": lowercase,
            "max_docs": max_docs,
            "min_frequency": min_frequency,
            "model_max_length": model_max_length,
        }
        tokenizer_card(tmp, corpus=list(corpus), settings=settings, vocab_size=len(loaded), location=out.path)
        publish_directory(tmp, out.path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    out.complete()
    return load_tokenizer(out.path)


def check_roberta_tokenizer(tok, vocab_size: int, where: str = "tokenizer") -> None:
    """Raise unless ``tok`` has ``vocab_size`` entries, RoBERTa's special ids and adds ``<s>``/``</s>``."""
    if len(tok) != vocab_size:
        raise RuntimeError(f"{where}: loads with {len(tok)} tokens, expected {vocab_size}")
    got = [tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, tok.mask_token_id]
    if got != [0, 1, 2, 3, 4]:
        raise RuntimeError(f"{where}: special token ids {got}, expected [0, 1, 2, 3, 4]")
    ids = tok("a")["input_ids"]
    if ids[0] != 0 or ids[-1] != 2:
        raise RuntimeError(f"{where}: does not add <s> ... </s> (got {ids})")
