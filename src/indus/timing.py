"""One latency timer: the wall time of single calls, after warm-up calls that are not timed.

Used for the per-query latency of a retriever (:mod:`indus.evaluation.ir`) and the per-sentence latency of an
encoder (:mod:`indus.pipeline.stages`), so that both mean the same thing: ``time.perf_counter`` around the call
alone, in milliseconds, preparation (tokenising) outside the timed region.

Example
-------
>>> times = latencies_ms(sorted, [[3, 1, 2]] * 5, warmup=[[1]])
>>> len(times), all(t >= 0 for t in times)
(5, True)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any


def latencies_ms(call: Callable[[Any], Any], items: Iterable[Any], *, warmup: Sequence[Any] = ()) -> list[float]:
    """``call(item)`` timed for each of ``items`` (milliseconds), after ``call(w)`` for each ``w`` of ``warmup``
    (untimed: first calls pay for lazy initialisation and caches)."""
    for item in warmup:
        call(item)
    times = []
    for item in items:
        start = time.perf_counter()
        call(item)
        times.append((time.perf_counter() - start) * 1000.0)
    return times
