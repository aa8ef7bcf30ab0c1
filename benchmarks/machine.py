"""Describe the machine a benchmark ran on, so committed results say where they come from."""

from __future__ import annotations

import fcntl
import os
import platform
import resource
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path


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


def _machine_busy_s() -> float | None:
    """CPU seconds all processes have spent busy since boot (/proc/stat), or None where there is no /proc."""
    try:
        with open("/proc/stat", encoding="utf-8") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    return sum(
        u.ru_utime + u.ru_stime
        for u in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


class OthersLoad:
    """Measure how much of the machine other processes used while a block ran, so a timed result can say whether
    it had the cores to itself: ``others_share`` is their CPU time over (wall time x cores), 0 alone, about 0.5
    beside one other single-threaded job on 2 cores (None where /proc/stat is missing)."""

    others_share: float | None = None

    def __enter__(self) -> OthersLoad:
        self._t0, self._busy0, self._own0 = time.monotonic(), _machine_busy_s(), _own_cpu_s()
        return self

    def __exit__(self, *exc: object) -> None:
        busy = _machine_busy_s()
        if busy is None or self._busy0 is None:
            return
        wall = max(time.monotonic() - self._t0, 1e-9)
        others = max(0.0, (busy - self._busy0) - (_own_cpu_s() - self._own0))
        self.others_share = round(others / (wall * (os.cpu_count() or 1)), 3)


@contextmanager
def results_lock(name: str) -> Iterator[None]:
    """Hold an exclusive lock named ``name`` (a file in the temp folder), so that several runs, one per core, can
    each read a results file, add their rows and write it back without losing another run's rows."""
    with open(Path(tempfile.gettempdir()) / f"{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


if __name__ == "__main__":
    print(machine_line())
