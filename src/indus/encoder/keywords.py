"""Each document's keywords for INDUS-SDE's weighted dynamic masking: TF-IDF over the corpus, at the token level.

INDUS-SDE (Pantha et al., KDD 2026) continued INDUS with 30% of tokens masked, most of the masks on each
document's keywords (YAKE there), so that the model must predict the science terms that carry a document. Here a
keyword is a vocabulary token: the inverse document frequency of every token id is fitted once over the training
documents with scikit-learn's ``TfidfTransformer``, and in each packed sequence every document piece (the tokens
between two special tokens) takes as keywords its distinct tokens with the top ``keyword_top`` TF-IDF scores.
Keywords are thus a pure function of the sequence and the IDF, so masks stay a function of (seed, step) and a
resumed run repeats them.

Example
-------
>>> import numpy as np, torch
>>> idf = fit_idf([[5, 6, 7], [5, 8], [5, 9, 9]], vocab_size=10)  # token 5 is in every document
>>> bool(idf[5] < idf[9])
True
>>> kw = keyword_positions(torch.tensor([[0, 5, 9, 9, 5, 2]]), idf, special_ids=(0, 2), top=0.5)
>>> kw.int().tolist()
[[0, 0, 1, 1, 0, 0]]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from indus.encoder.data import _iter_docs, encode_texts


def fit_idf(docs: Iterable[Sequence[int]], vocab_size: int) -> np.ndarray:
    """Smoothed inverse document frequency of every token id, ``(vocab_size,)``, by scikit-learn.

    ``docs`` are token-id lists; an id never seen gets the highest IDF (it occurs in no document).
    """
    from scipy.sparse import csr_matrix
    from sklearn.feature_extraction.text import TfidfTransformer

    indptr, indices = [0], []
    for doc in docs:
        indices.extend(int(t) for t in doc)
        indptr.append(len(indices))
    if len(indptr) == 1:
        raise ValueError("no documents to fit the IDF on")
    data = np.ones(len(indices), dtype=np.float32)
    counts = csr_matrix(
        (data, np.asarray(indices, dtype=np.int64), np.asarray(indptr)), shape=(len(indptr) - 1, vocab_size)
    )  # (D, V); duplicates are summed
    return TfidfTransformer(smooth_idf=True).fit(counts).idf_.astype(np.float32)


def corpus_idf(files: Sequence, tokenizer, max_docs: int) -> np.ndarray:
    """The token IDF of the first ``max_docs`` documents of the training ``files`` (tokenised like packing)."""
    return fit_idf(encode_texts(tokenizer, _iter_docs(files, max_docs)), len(tokenizer))


def keyword_positions(input_ids: torch.Tensor, idf: np.ndarray, special_ids: Sequence[int], top: float) -> torch.Tensor:
    """Where each document piece of ``input_ids`` (B, L) holds one of its keywords; bool (B, L).

    A piece is a run of tokens between special tokens (packing separates documents with ``</s>``/``[SEP]``).
    Its keywords are its distinct tokens with the ``ceil(top * n_distinct)`` highest ``tf * idf`` scores, ties
    broken by token id so the result is deterministic.
    """
    ids = input_ids.cpu().numpy()
    special = np.isin(ids, np.asarray(special_ids))  # (B, L)
    piece = np.cumsum(special, axis=1)  # (B, L) piece index along each row
    out = np.zeros(ids.shape, dtype=bool)
    for b in range(ids.shape[0]):
        for p in np.unique(piece[b][~special[b]]):
            pos = np.flatnonzero((piece[b] == p) & ~special[b])  # (n,)
            uniq, inverse, counts = np.unique(ids[b, pos], return_inverse=True, return_counts=True)
            score = counts / len(pos) * idf[np.minimum(uniq, len(idf) - 1)]  # (u,)
            k = int(np.ceil(top * len(uniq)))
            chosen = np.zeros(len(uniq), dtype=bool)
            chosen[np.argsort(-score, kind="stable")[:k]] = True
            out[b, pos] = chosen[inverse]
    return torch.from_numpy(out).to(input_ids.device)
