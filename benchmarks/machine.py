"""Describe the machine a benchmark ran on, so committed results say where they come from."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime


def machine_info() -> dict[str, str | int]:
    """CPU model, core count, memory, accelerator, Python and torch versions, and the date."""
    import torch

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gib = 0
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            mem_gib = round(int(next(line.split()[1] for line in fh if line.startswith("MemTotal"))) / 2**20)
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "memory_gib": mem_gib,
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


def machine_line() -> str:
    """One line for the header of a results table."""
    m = machine_info()
    return (
        f"{m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), {m['memory_gib']} GiB, "
        f"GPU: {m['gpu']}; Python {m['python']}, torch {m['torch']}; {m['date']}"
    )


if __name__ == "__main__":
    print(machine_line())
