"""Model cards: the ``README.md`` every folder indus trains carries (encoder, distilled student, retriever,
retriever student, tokenizer).

A card opens with the Hugging Face metadata header (YAML front matter: ``library_name``, ``tags``, ``base_model``
when the run started from a hub model, ``datasets`` when the data are named datasets of the data root) and then
says what the folder is: the base model or preset, the tokenizer, every data file with its size and SHA-256, the
recipe and its settings, the steps trained, held-out metrics, the indus version and the command line.

A card never quotes training text: it names files and hashes them. (sentence-transformers' generated card copies
training pairs verbatim and, for a model built in memory, says "Base model: Unknown"; the retriever folders carry
this card instead.)

Example
-------
>>> import tempfile
>>> card = write_card(tempfile.mkdtemp(), title="indus encoder", kind="encoder", library_name="transformers",
...                   settings={"lr": 6e-4}, metrics={"valid_loss": 5.1})
>>> card.name, "library_name: transformers" in card.read_text()
('README.md', True)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from indus import __version__
from indus.atomic import atomic_write_text, sha256_file
from indus.config import config_to_dict
from indus.data.registry import data_root
from indus.errors import IndusError
from indus.models import LayerCut, ModelSpec, RandomInit, parse_model
from indus.outdir import command_line

CARD = "README.md"
#: model specs with a Hugging Face hub id (what ``base_model`` in the header must be)
HUB_IDS = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "sentence-transformers/all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
}


def data_files(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """``{"path", "bytes", "sha256"}`` of every file named or inside a named folder (sorted; missing ones skipped)."""
    rows = []
    for given in paths:
        path = Path(given).expanduser()
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if f.is_file():
                rows.append({"path": str(f.resolve()), "bytes": f.stat().st_size, "sha256": sha256_file(f)})
    return rows


def dataset_names(paths: Iterable[str | Path]) -> list[str]:
    """Names of the data-root datasets the paths lie in (``corpus``, ``pairs/scifact``...), for the header."""
    root = data_root()
    if root is None:
        return []
    names = []
    for given in paths:
        try:
            parts = Path(given).expanduser().resolve().relative_to(root.resolve()).parts
        except ValueError:
            continue
        if not parts:
            continue
        if parts[0] == "pairs" and len(parts) > 1:
            name = "pairs/" + parts[1].split(".")[0]
        elif parts[0] in ("ner", "qa", "ir", "classification") and len(parts) > 1:
            name = parts[1]
        else:
            name = parts[0]
        if name not in names:
            names.append(name)
    return names


def hub_id(spec: str | None) -> str | None:
    """The hub id of a model spec (``minilm``, ``layers:3@minilm`` -> all-MiniLM-L6-v2), or ``None``."""
    if not spec:
        return None
    parsed = _parse(str(spec))
    return HUB_IDS.get(parsed.base if isinstance(parsed, LayerCut) else str(spec))


def _parse(spec: str) -> ModelSpec | None:
    """The meaning of a model string, or ``None`` for one a card can only quote (it never stops a card)."""
    try:
        return parse_model(spec, fused=False)
    except IndusError:
        return None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.6g}"
    if isinstance(value, list | tuple | dict):
        return f"`{json.dumps(value, default=str)}`"
    return "n/a" if value is None else f"`{value}`" if isinstance(value, str) else str(value)


def _table(rows: Mapping[str, Any]) -> list[str]:
    lines = ["| setting | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v).replace('|', '&#124;')} |" for k, v in rows.items()]
    return lines


def write_card(
    folder: str | Path,
    *,
    title: str,
    kind: str,
    library_name: str,
    summary: str = "",
    tags: Sequence[str] = (),
    pipeline_tag: str | None = None,
    base_model: str | None = None,
    base_description: str | None = None,
    tokenizer: str | None = None,
    data: Mapping[str, Iterable[str | Path]] | None = None,
    recipe: str = "",
    settings: Mapping[str, Any] | None = None,
    steps: int | None = None,
    metrics: Mapping[str, Any] | None = None,
    metrics_note: str = "",
    license: str | None = None,
    usage: str = "",
) -> Path:
    """Write ``folder/README.md`` (atomically) and return its path.

    Parameters
    ----------
    folder
        The model or tokenizer folder.
    title, kind, summary
        Heading, what the folder is (``encoder``, ``retriever``...) and a sentence about it.
    library_name, tags, pipeline_tag, license
        Hugging Face metadata (``license`` only when known).
    base_model
        The model the run started from (a spec or path); a hub id goes into the header as ``base_model``.
    base_description
        How to describe the start when there is no base model (``random weights, preset micro``).
    tokenizer
        The tokenizer (folder or spec).
    data
        Role (``train``, ``held-out``, ``pairs``...) -> files or folders; each file is listed with its SHA-256.
    recipe, settings
        The training recipe in a sentence and its resolved settings.
    steps
        Optimizer steps trained.
    metrics, metrics_note
        Held-out metrics (and what they measure).
    usage
        A code snippet that loads the folder.
    """
    folder = Path(folder)
    data = {role: list(paths) for role, paths in (data or {}).items()}
    header: dict[str, Any] = {"library_name": library_name, "tags": list(dict.fromkeys(["indus", kind, *tags]))}
    hub = hub_id(base_model)
    if hub:
        header["base_model"] = hub
    if pipeline_tag:
        header["pipeline_tag"] = pipeline_tag
    names = dataset_names(p for paths in data.values() for p in paths)
    if names:
        header["datasets"] = names
    if license:
        header["license"] = license
    lines = ["---", yaml.safe_dump(header, sort_keys=False).rstrip(), "---", "", f"# {title}", ""]
    if summary:
        lines += [summary, ""]
    lines += ["## Model", ""]
    if base_model:
        lines.append(f"- Base model: `{base_model}`" + (f" (`{hub}`)" if hub and hub != base_model else ""))
    else:
        lines.append(f"- Base model: none; {base_description or 'trained from scratch'}")
    if tokenizer:
        lines.append(f"- Tokenizer: `{tokenizer}`")
    lines += [
        f"- Built by indus {__version__} on {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"- Command: `{command_line()}`",
        "",
    ]
    if usage:
        lines += ["## Use", "", "```python", usage.strip(), "```", ""]
    if data:
        lines += [
            "## Data",
            "",
            "Files as read, with their SHA-256 (the card names data; it never quotes it).",
            "",
            "| role | file | bytes | sha256 |",
            "|---|---|---|---|",
        ]
        for role, paths in data.items():
            rows = data_files(paths)
            if not rows:
                lines.append(f"| {role} | {', '.join(map(str, paths)) or '(none)'} | | |")
            lines += [f"| {role} | `{r['path']}` | {r['bytes']:,} | `{r['sha256']}` |" for r in rows]
        lines.append("")
    if recipe or settings:
        lines += ["## Training", ""]
        if recipe:
            lines += [recipe, ""]
        if steps is not None:
            lines += [f"Steps trained: {steps:,}", ""]
        if settings:
            lines += [*_table(settings), ""]
    lines += ["## Held-out metrics", ""]
    shown = {k: v for k, v in (metrics or {}).items() if v is not None}
    if shown:
        if metrics_note:
            lines += [metrics_note, ""]
        lines += ["| metric | value |", "|---|---|", *[f"| {k} | {_fmt(v)} |" for k, v in shown.items()], ""]
    else:
        lines += [metrics_note or "None measured by this run.", ""]
    return atomic_write_text(folder / CARD, "\n".join(lines))


def read_header(path: str | Path) -> dict[str, Any]:
    """The YAML front matter of a card (a folder or its README.md) as a dict."""
    path = Path(path)
    text = (path / CARD if path.is_dir() else path).read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        raise ValueError(f"{path}: no YAML front matter")
    block = text[4 : text.index("\n---", 4)]
    return yaml.safe_load(block)


# ----------------------------------------------------------------------------- one function per kind of folder

ENCODER_METRICS = ("valid_loss", "valid_ppl", "valid_distill_loss")


def encoder_card(
    folder: Path, cfg: Any, metrics: Mapping[str, Any], *, kind: str, location: Path | None = None
) -> Path:
    """The card of a pretrained encoder (``kind="encoder"``) or a MiniLMv2 student (``kind="distilled-encoder"``),
    written into ``folder``; ``location`` is where the folder will live (for the usage snippet)."""
    settings = config_to_dict(cfg)
    paths = ("train_files", "valid_files", "tokenizer", "teacher", "init_from", "cache_dir")
    data = {"train": settings.get("train_files") or [], "held-out": settings.get("valid_files") or []}
    shown = {k: v for k, v in settings.items() if k not in paths}
    if kind == "distilled-encoder":
        title, recipe = (
            f"indus MiniLMv2 student ({cfg.preset})",
            f"MiniLMv2 (arXiv 2012.15828): the student's last layer learns the Q-Q, K-K and V-V "
            f"relations of teacher layer {metrics.get('teacher_layer')} of `{cfg.teacher}`; then the "
            f"MLM head is fitted for {metrics.get('head_fit_steps')} steps with the encoder frozen.",
        )
        base, base_desc = str(cfg.teacher), None
        note = "`valid_loss`: held-out MLM loss with the fitted head; `valid_distill_loss`: held-out MiniLMv2 loss."
    else:
        title = f"indus encoder ({Path(cfg.init_from).name if cfg.init_from else cfg.preset})"
        recipe = (
            "Masked-LM pretraining (RoBERTa's recipe: 15% of tokens, 80/10/10 mask/random/keep, dynamic "
            "masks), AdamW with linear warm-up and decay."
        )
        base = str(cfg.init_from) if cfg.init_from else None
        base_desc = f"random weights, preset `{cfg.preset}`"
        note = "Masked-LM loss on the held-out files (the same masks in every run)."
    extra = {k: metrics.get(k) for k in ("tokens_seen", "params", "train_flops", "world_size", "device", "bf16")}
    return write_card(
        folder,
        title=title,
        kind=kind,
        library_name="transformers",
        tags=["fill-mask", "roberta"],
        pipeline_tag="fill-mask",
        base_model=base,
        base_description=base_desc,
        tokenizer=str(cfg.tokenizer),
        data=data,
        recipe=recipe,
        settings={**shown, **extra},
        steps=metrics.get("steps"),
        metrics={k: metrics.get(k) for k in ENCODER_METRICS},
        metrics_note=note,
        usage=f"from transformers import AutoModelForMaskedLM, AutoTokenizer\n"
        f'model = AutoModelForMaskedLM.from_pretrained("{location or folder}")\n'
        f'tokenizer = AutoTokenizer.from_pretrained("{location or folder}")',
    )


def retriever_card(folder: Path, cfg: Any, summary: Mapping[str, Any], *, location: Path | None = None) -> Path:
    """The card of a retriever trained with the GTE loss, or of a DistillCSE student (``cfg`` has ``teacher``)."""
    settings = config_to_dict(cfg)
    student = hasattr(cfg, "teacher")
    base = str(cfg.student if student else cfg.model)
    shown = {k: v for k, v in settings.items() if k not in ("pairs", "teacher_cache")}
    shown.update({k: summary.get(k) for k in ("pairs_seen", "epochs_done", "stop_reason", "sources")})
    if student:
        title, kind = "indus retriever student (DistillCSE)", "retriever-student"
        recipe = (
            f"DistillCSE (arXiv 2310.13499) from the teacher `{cfg.teacher}`: cross-entropy between the "
            f"teacher's and the student's in-batch similarity rows at tau_KD = {cfg.tau_kd}, plus the GTE "
            "contrastive loss; one source per batch."
        )
    else:
        title, kind = "indus retriever (GTE contrastive)", "retriever"
        recipe = (
            f"GTE improved contrastive loss (arXiv 2308.03281) over in-batch negatives at tau = "
            f"{cfg.temperature}, mean pooling, normalised embeddings, one source per batch."
        )
    base_desc = f"random weights, preset `{base.split(':', 1)[1]}`" if isinstance(_parse(base), RandomInit) else None
    return write_card(
        folder,
        title=title,
        kind=kind,
        library_name="sentence-transformers",
        tags=["sentence-transformers", "sentence-similarity", "feature-extraction"],
        pipeline_tag="sentence-similarity",
        base_model=None if base_desc else base,
        base_description=base_desc,
        tokenizer=base if not student else f"{base} (teacher's if random)",
        data={"pairs": settings.get("pairs") or []},
        recipe=recipe,
        settings=shown,
        steps=summary.get("steps"),
        metrics={"final_train_loss": summary.get("final_loss")},
        metrics_note="No held-out set during training: the loss below is the last logged training "
        "loss; `indus eval ir --model THIS_FOLDER --data DATA` measures retrieval.",
        usage=f"from sentence_transformers import SentenceTransformer\n"
        f'model = SentenceTransformer("{location or folder}")',
    )


def tokenizer_card(
    folder: Path,
    *,
    corpus: Sequence[str | Path],
    settings: Mapping[str, Any],
    vocab_size: int,
    location: Path | None = None,
) -> Path:
    """The card of an INDUSBPE tokenizer folder."""
    return write_card(
        folder,
        title=f"INDUSBPE tokenizer ({vocab_size:,} tokens)",
        kind="tokenizer",
        library_name="transformers",
        tags=["tokenizer", "byte-level-bpe"],
        summary="A byte-level BPE with RoBERTa's special tokens (<s> <pad> </s> <unk> <mask> = ids "
        "0..4), trained with the tokenizers library.",
        data={"train": list(corpus)},
        recipe="Byte-level BPE (tokenizers' BpeTrainer).",
        settings=settings,
        metrics_note="None measured here; `indus tokenizer compare` reports fertility on held-out text.",
        usage=f"from transformers import AutoTokenizer\ntokenizer = AutoTokenizer.from_pretrained("
        f'"{location or folder}")',
    )
