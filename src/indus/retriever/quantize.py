"""An int8 query encoder: ``indus retriever export --format int8 --model M --out DIR``.

PyTorch dynamic quantization (``torch.ao.quantization.quantize_dynamic``): the weights of every ``nn.Linear`` layer
(attention projections and feed-forward blocks, nearly all of a BERT encoder's compute) become int8 with one scale
per tensor, and activations are quantized on the fly per batch; embeddings, LayerNorm and pooling stay float. It
runs on CPUs only and needs no calibration data. onnxruntime is not required.

The exported folder is a SentenceTransformer folder (the model's float weights, tokenizer and modules) plus
``indus-quantization.json``. Every indus loader (:func:`indus.models.load_sentence_transformer`, so ``indus eval ir
--model DIR``, ``indus retriever index --model DIR``, the studio) sees that file and quantizes the model on load, on
the CPU: the quantization is a deterministic function of the float weights, so the folder stays loadable by plain
sentence-transformers too (as the float model). The file records the cosine between the float and int8 embeddings
of a few probe texts, measured at export. A query encoder's export (``indus retriever distill --query-only``)
records its documents model too, so ``indus eval ir`` and ``indus retriever index`` pair it as they pair the float
query encoder.

Example
-------
>>> info = export_int8("minilm", "runs/minilm-int8")  # doctest: +SKIP
>>> info["probe_cosine_min"] > 0.99  # doctest: +SKIP
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from indus.atomic import atomic_directory, atomic_write_json
from indus.errors import IndusError
from indus.models import (  # noqa: F401 - quantize_int8 re-exported: the loaders' hook
    INT8_MARKER,
    documents_model,
    load_sentence_transformer,
    quantize_int8,
)
from indus.retriever.bi_encoder import encode, load_bi_encoder

QUANT_FILE = INT8_MARKER
METHOD = "torch.ao.quantization.quantize_dynamic"
PROBES = [
    "Stellar winds shape the heliosphere.",
    "Does vitamin D lower the risk of fractures?",
    "Sea ice extent in the Arctic declined by 13% per decade.",
    "x",
]


def is_int8_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by :func:`export_int8`."""
    return (Path(path) / QUANT_FILE).is_file()


def export_int8(
    model: str, out: str | Path, *, max_seq_length: int | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Write ``model`` as an int8 query encoder folder (see the module docstring); returns the recorded info."""
    import numpy as np

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise IndusError(f"--out {out}: not empty (pass --overwrite to replace it)")
    float_model = load_bi_encoder(model, max_seq_length=max_seq_length, device="cpu")
    reference = encode(float_model, PROBES)  # (P, D)
    with atomic_directory(out) as tmp:
        float_model.save(str(tmp))
        info = {
            "method": METHOD,
            "dtype": "qint8",
            "modules": ["torch.nn.Linear"],
            "source": model,
            "max_seq_length": float_model.max_seq_length,
        }
        docs = documents_model(model)
        if docs:  # a query encoder: its index holds its teacher's document vectors
            info["documents_model"] = docs
        atomic_write_json(tmp / QUANT_FILE, info)

        quantized = load_sentence_transformer(str(tmp), device="cpu")
        cosines = (encode(quantized, PROBES) * reference).sum(axis=1)  # both normalised
        info["probe_cosine_min"] = round(float(np.min(cosines)), 6)
        atomic_write_json(tmp / QUANT_FILE, info)
    return {**info, "out": str(out)}
