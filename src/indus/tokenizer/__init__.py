"""INDUSBPE: a domain byte-level BPE tokenizer (arXiv 2405.10725) and tokenizer fertility analysis."""

from indus.tokenizer.fertility import FertilityRow, compare_tokenizers
from indus.tokenizer.train import ROBERTA_SPECIAL_TOKENS, train_bpe

__all__ = ["ROBERTA_SPECIAL_TOKENS", "FertilityRow", "compare_tokenizers", "train_bpe"]
