"""The run log: one JSON object per line in ``log.jsonl`` (training steps and evaluations) and its loss curve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from indus.atomic import atomic_write_text


class RunLog:
    """Append-only ``log.jsonl``; on resume, records after the checkpoint's step are dropped first.

    Parameters
    ----------
    path
        The log file.
    resume_step
        Keep only records with ``step <= resume_step`` (``None``: start a new log).
    enabled
        Only the main process writes.
    """

    def __init__(self, path: Path, resume_step: int | None = None, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled
        if not enabled:
            return
        kept = [r for r in read_log(path) if r.get("step", 0) <= resume_step] if resume_step is not None else []
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (flushed, so a killed run keeps every line written)."""
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a ``log.jsonl`` (missing file: none; a torn last line from a killed run is skipped)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_loss_curve(log_path: Path, out_png: Path, title: str = "", ylabel: str = "loss") -> Path | None:
    """Training loss (and held-out loss) against tokens seen, as a PNG; ``None`` when there is nothing to plot.

    ``ylabel`` names the objective: a MiniLMv2 relation loss near 0 is not a masked-LM loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    train = [r for r in records if "loss" in r]
    valid = [r for r in records if "valid_loss" in r]
    if not train and not valid:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    if train:
        ax.plot([r["tokens"] for r in train], [r["loss"] for r in train], lw=1, label="train")
    if valid:
        ax.plot([r["tokens"] for r in valid], [r["valid_loss"] for r in valid], "o-", ms=3, label="held-out")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out_png)
    return out_png
