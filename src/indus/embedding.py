"""Sentence embeddings from a ``SentenceTransformer``: what the IR evaluator, the index and search all encode with.

Many texts go through ``SentenceTransformer.encode`` (length-sorted batches, a progress bar). A few texts (one query
at search time) skip its per-call bookkeeping: for the standard stack (Transformer, mean Pooling, Normalize) they go
straight through the tokenizer, the Hugging Face model and mean pooling; one text goes through a copy of the Rust
tokenizer, unpadded, so the model runs without an attention mask. That is the path whose per-query latency the IR
evaluator measures. It sits below the rooms (the evaluator and the retriever both use it) and imports the
heavy libraries only when it encodes.

Example
-------
>>> from indus.models import load_sentence_transformer
>>> encode(load_sentence_transformer("random:micro"), ["a query"]).shape  # doctest: +SKIP
(1, 32)
"""

from __future__ import annotations

from typing import Any

__all__ = ["LEAN_MAX_TEXTS", "encode", "model_inputs"]


def model_inputs(model: Any, texts: list[str]) -> dict[str, Any]:
    """Tokenised, padded model inputs on the model's device, as ``SentenceTransformer.encode`` builds them."""
    from sentence_transformers.util import batch_to_device

    return batch_to_device(model.preprocess(texts), model.device)


LEAN_MAX_TEXTS = 8  # up to this many texts are encoded in one direct forward pass


def _direct_encoder(model: Any) -> Any:
    """For the standard stack (Transformer, mean Pooling, optional Normalize: every indus bi-encoder), a function
    ``texts -> embeddings`` that calls the tokenizer and the Hugging Face model directly, skipping the per-call
    bookkeeping of the sentence-transformers modules (about 1 ms per query on 2 CPU cores) and the unused ``[CLS]``
    pooler; else ``None``. It is checked once against the module stack on a probe text and dropped if the two
    disagree."""
    import torch
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    cached = getattr(model, "_indus_direct", False)
    if cached is not False:
        return cached
    mods = list(model)
    direct = None
    if (
        len(mods) in (2, 3)
        and isinstance(mods[0], Transformer)
        and isinstance(mods[1], Pooling)
        and mods[1].pooling_mode == "mean"
        and mods[1].include_prompt
        and (len(mods) == 2 or isinstance(mods[2], Normalize))
        and not getattr(mods[0], "do_lower_case", False)
        and getattr(mods[0], "tokenizer", None) is not None
    ):
        transformer, tokenizer = mods[0], mods[0].tokenizer
        accepted = set(tokenizer.model_input_names)
        encoder = _without_pooler(transformer.auto_model)
        single, truncated_at = _single_text_tokenizer(tokenizer), [None]

        def direct(texts: list[str]) -> Any:
            if single is not None and len(texts) == 1 and model.max_seq_length:  # one query: no padding, no mask
                if truncated_at[0] != model.max_seq_length:  # follows the model's length, as the wrapper call does
                    single.enable_truncation(max_length=model.max_seq_length)
                    truncated_at[0] = model.max_seq_length
                ids = single.encode(texts[0])
                batch = {"input_ids": torch.tensor([ids.ids], device=model.device)}
                if "token_type_ids" in accepted:
                    batch["token_type_ids"] = torch.tensor([ids.type_ids], device=model.device)
                hidden = encoder(**batch).last_hidden_state  # (1, T, H)
                return torch.nn.functional.normalize(hidden.mean(1).float(), dim=-1)
            batch = tokenizer(
                texts, padding=True, truncation="longest_first", max_length=model.max_seq_length, return_tensors="pt"
            )
            batch = {k: v.to(model.device) for k, v in batch.items() if k in accepted}
            hidden = encoder(**batch).last_hidden_state  # (B, T, H)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, H)
            return torch.nn.functional.normalize(mean.float(), dim=-1)

        probes = [["direct path probe: stellar winds and sea ice", "x"], ["one query: do auroras follow solar wind?"]]
        try:
            agree = all(torch.allclose(direct(p), _stack_encode(model, p), atol=1e-4) for p in probes)
        except Exception:  # noqa: BLE001 - any failure means: use the module stack
            agree = False
        direct = direct if agree else None
    model._indus_direct = direct
    return direct


def _single_text_tokenizer(tokenizer: Any) -> Any:
    """For a fast tokenizer, a copy of its Rust tokenizer that never pads (the caller sets its truncation): one text
    encodes without the per-call bookkeeping of the Python wrapper. The wrapper's own tokenizer is not changed.
    ``None`` for a slow tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None:
        return None
    from tokenizers import Tokenizer

    single = Tokenizer.from_str(backend.to_str())
    single.no_padding()
    return single


def _without_pooler(auto_model: Any) -> Any:
    """The Hugging Face encoder without its ``[CLS]`` pooler (BERT/RoBERTa's dense + tanh, which mean pooling never
    reads): a shallow copy sharing every parameter and submodule, so it follows the model's weights; the model
    itself is not changed. Saves one hidden x hidden matmul per query."""
    import copy

    if getattr(auto_model, "pooler", None) is None:
        return auto_model
    lean = copy.copy(auto_model)
    lean._modules = dict(auto_model._modules)  # its own module table: the original keeps its pooler
    lean._modules["pooler"] = None
    return lean


def _stack_encode(model: Any, texts: list[str]) -> Any:
    import torch

    return torch.nn.functional.normalize(model(model_inputs(model, texts))["sentence_embedding"].float(), dim=-1)


def encode(model: Any, texts: list[str], *, batch_size: int = 64, progress: bool = False) -> Any:
    """``(len(texts), dim)`` L2-normalised float32 embeddings from a ``SentenceTransformer``.

    Up to ``LEAN_MAX_TEXTS`` texts (a query at search time) go through the model in one padded batch, directly
    (:func:`_direct_encoder`) or through its modules; more go through ``SentenceTransformer.encode``
    (length-sorted batches, progress bar). All give the same embeddings.
    """
    import numpy as np
    import torch

    with torch.inference_mode():
        if 0 < len(texts) <= min(LEAN_MAX_TEXTS, batch_size):
            if model.training:
                model.eval()
            direct = _direct_encoder(model)
            emb = (direct(list(texts)) if direct is not None else _stack_encode(model, list(texts))).cpu().numpy()
        else:
            emb = model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress,
            )
    return np.ascontiguousarray(emb, dtype=np.float32)
