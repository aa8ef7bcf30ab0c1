"""The helpers the benchmarks time and record results with (benchmarks/machine.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the benchmarks folder is not an installed package

from benchmarks.machine import OthersLoad, results_lock  # noqa: E402

SPIN = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < {s}: pass\n"


def spin(seconds: float) -> None:
    t = time.monotonic()
    while time.monotonic() - t < seconds:
        pass


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs /proc/stat")
def test_others_load_counts_another_process_not_this_one():
    # a busy process that is not reaped while the block runs (a reaped child counts as this process's own time)
    spinner = subprocess.Popen([sys.executable, "-c", SPIN.format(s=1.5)])
    time.sleep(0.2)  # past its start-up
    with OthersLoad() as load:
        time.sleep(1.0)
    spinner.wait()
    # the same busy work done by this process is not counted as others' (whatever else the machine is running,
    # the difference is about the spinner's core)
    with OthersLoad() as own:
        spin(1.0)
    assert load.others_share is not None and own.others_share is not None
    assert load.others_share - own.others_share >= 0.15


ADD_ROWS = """
import json, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from benchmarks.machine import results_lock
path = Path({path!r})
for i in range(20):
    with results_lock({name!r}):
        rows = json.loads(path.read_text()) if path.is_file() else []
        rows.append(sys.argv[1] + str(i))
        path.write_text(json.dumps(rows))
"""


def test_results_lock_keeps_every_writers_rows(tmp_path):
    path = tmp_path / "rows.json"
    code = ADD_ROWS.format(repo=str(REPO), path=str(path), name=f"t{id(path)}")
    writers = [subprocess.Popen([sys.executable, "-c", code, tag]) for tag in "ab"]
    assert [w.wait() for w in writers] == [0, 0]
    rows = json.loads(path.read_text())
    assert sorted(rows) == sorted(f"{t}{i}" for t in "ab" for i in range(20))
    with results_lock("reentry-check"):  # the lock is released when the block ends
        pass
