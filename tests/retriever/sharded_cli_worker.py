"""Run by ``tests/retriever/test_sharded_cli.py`` under ``torchrun --nproc_per_node 2`` (gloo, CPU).

Each process runs the ``indus`` command lines of COMMANDS_JSON (a JSON list of argument lists) through the CLI's
own entry point, as ``torchrun ... -m indus ...`` does, and logs every file this process moves into place
(``os.replace``, the last step of every atomic write), every faiss index it writes and each command's exit code,
one JSON line each, to LOG_DIR/rank<R>.jsonl; LOG_DIR/pid<R> holds its process id. Usage::

    torchrun --standalone --nproc_per_node 2 sharded_cli_worker.py LOG_DIR COMMANDS_JSON
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(log_dir: Path, commands: list[list[str]]) -> None:
    rank = int(os.environ["RANK"])
    log = log_dir / f"rank{rank}.jsonl"
    (log_dir / f"pid{rank}").write_text(str(os.getpid()))

    def record(kind: str, path: object) -> None:
        with log.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({kind: str(path)}) + "\n")

    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        record("replace", dst)
        return real_replace(src, dst, *args, **kwargs)

    import faiss

    real_write = faiss.write_index

    def write_index(index, path, *args):
        record("faiss", path)
        return real_write(index, path, *args)

    os.replace, faiss.write_index = replace, write_index
    from indus.cli import main as indus_main

    for args in commands:
        sys.argv = ["indus", *args]
        code = 0
        try:
            indus_main()
        except SystemExit as exc:
            code = exc.code or 0
        record("exit", code)


if __name__ == "__main__":
    main(Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text(encoding="utf-8")))
