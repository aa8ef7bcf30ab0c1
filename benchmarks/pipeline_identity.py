"""The micro pipeline before and after a change: the same numbers in ``summary.json`` and the same stage keys.

Runs the micro pipeline of ``tests/pipeline`` (three 2-layer 32-wide encoders, a student, two retrievers, NER and
IR on toy data, the scaling section) twice on one data folder: with the code of a git ref (``--before``, exported
with ``git archive``) and with this working tree's ``src``. It then compares the two ``summary.json`` files leaf by
leaf, timings left out (wall and step seconds, throughput, latency: they differ from run to run on any machine) and
the two run folders written as ``<run>``. Last, this tree's code runs once more over the ``--before`` run folder,
where every stage must be found in the cache: the stage keys did not change either. Then both codes write the
scaling report on the packaged tables (``indus scaling report OUT --n-bootstrap 100 --n-random 10 --seed 0``, the
settings of ``benchmarks/results/scaling_report``) and the two ``report.json`` files are compared leaf by leaf.

Run (a few minutes on 2 shared cores)::

    flock /tmp/indus-bench.lock .venv/bin/python benchmarks/pipeline_identity.py --before 89bd9c9

Writes ``benchmarks/results/pipeline_identity.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# measured times: not part of what a change must keep
VOLATILE = re.compile(
    r"^(wall_s|train_s|eval_s|index_s|search_s|head_fit_s|tokens_per_s|docs_per_s|queries_per_s"
    r"|latency_ms|latency_ms_p90|mfu|cached)$"
)

RUN = """
import importlib.util, json, os, sys, yaml
from pathlib import Path
root, data, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
spec = importlib.util.spec_from_file_location("micro", root / "tests/pipeline/test_pipeline_micro.py")
micro = importlib.util.module_from_spec(spec)
spec.loader.exec_module(micro)
for task in micro.MICRO["eval"]["tasks"]:  # settings pinned for this run (--pin / --pin-after)
    task["settings"].update(json.loads(os.environ.get("IDENTITY_PINS", "{}")).get(task["task"], {}))
if not data.exists():
    micro._data_root(data)
os.environ["INDUS_DATA"] = str(data)
from indus.config import load_config
from indus.pipeline import PipelineConfig, run_pipeline
config = out.parent / (out.name + ".yaml")
config.write_text(yaml.safe_dump(micro.MICRO))
logs = []
summary = run_pipeline(load_config(PipelineConfig, config), out, log=logs.append)
print(json.dumps({"ran": [s["name"] for s in summary["stages"] if not s["cached"]],
                  "stages": len(summary["stages"])}))
"""


def run_micro(
    src: Path, tests_root: Path, data: Path, out: Path, pins: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The micro pipeline with the code under ``src`` (its tests' fixture from ``tests_root``) into ``out``, its
    evaluation tasks' settings updated by ``pins`` (task -> settings)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(src),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "IDENTITY_PINS": json.dumps(pins or {}),
    }
    proc = subprocess.run(
        [sys.executable, "-c", RUN, str(tests_root), str(data), str(out)],
        env=env,
        capture_output=True,
        text=True,
        cwd=tests_root,
    )
    if proc.returncode != 0:
        raise SystemExit(f"micro pipeline failed with {src}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


SCALING_ARGS = ["--n-bootstrap", "100", "--n-random", "10", "--seed", "0"]


def run_scaling(src: Path, out: Path) -> dict[str, Any]:
    """``indus scaling report`` with the code under ``src`` into ``out``; its ``report.json``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.run(
        [sys.executable, "-m", "indus", "scaling", "report", str(out), *SCALING_ARGS],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"scaling report failed with {src}:\n{proc.stderr[-3000:]}")
    return json.loads((out / "report.json").read_text())


def normalise(obj: Any, run: str) -> Any:
    """``obj`` without timings, with the run folder written as ``<run>``."""
    if isinstance(obj, dict):
        return {k: normalise(v, run) for k, v in obj.items() if not VOLATILE.match(k) and k != "latency"}
    if isinstance(obj, list):
        return [normalise(v, run) for v in obj]
    if isinstance(obj, str):
        return obj.replace(run, "<run>")
    return obj


def leaves(obj: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of a JSON value by its dotted path."""
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in leaves(val, f"{path}.{key}" if path else key).items()}
    if isinstance(obj, list):
        return {k: v for i, val in enumerate(obj) for k, v in leaves(val, f"{path}[{i}]").items()}
    return {path: obj}


def parse_pins(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["ner.lr=5e-5"]`` -> ``{"ner": {"lr": 5e-05}}`` (values read as YAML)."""
    import yaml

    pins: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        task, dot, name = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--pin {item!r}: expected TASK.KEY=VALUE")
        pins.setdefault(task, {})[name] = yaml.safe_load(value)
    return pins


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git ref of the code before the change")
    parser.add_argument("--out", type=Path, default=RESULTS / "pipeline_identity.md")
    parser.add_argument(
        "--pin",
        action="append",
        default=[],
        metavar="TASK.KEY=VALUE",
        help="an evaluation setting of the micro config, for both codes (YAML value)",
    )
    parser.add_argument(
        "--pin-after",
        action="append",
        default=[],
        metavar="TASK.KEY=VALUE",
        help="a setting for this tree's code only (one the before code does not know)",
    )
    args = parser.parse_args(argv)
    pins, pins_after = parse_pins(args.pin), parse_pins(args.pin_after)
    for task, settings in pins.items():
        pins_after[task] = {**settings, **pins_after.get(task, {})}
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine_line  # the benchmarks' own helper

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = tmp / "before-tree"
        old.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.before, "src", "tests/pipeline"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        data = tmp / "data"
        before = run_micro(old / "src", old, data, tmp / "before", pins)
        after = run_micro(ROOT / "src", ROOT, data, tmp / "after", pins_after)
        again = run_micro(ROOT / "src", ROOT, data, tmp / "before", pins_after)
        a = leaves(normalise(json.loads((tmp / "before" / "summary.json").read_text()), str(tmp / "before")))
        b = leaves(normalise(json.loads((tmp / "after" / "summary.json").read_text()), str(tmp / "after")))
        sa = leaves(normalise(run_scaling(old / "src", tmp / "scaling-before"), str(tmp / "scaling-before")))
        sb = leaves(normalise(run_scaling(ROOT / "src", tmp / "scaling-after"), str(tmp / "scaling-after")))
    head = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    # a leaf only the after summary has is a new field (a feature's setting or count), not a changed result
    added = sorted(b.keys() - a.keys())
    differ = sorted(k for k in a.keys() if a[k] != b.get(k, "<missing>"))
    scaling_differ = sorted(k for k in sa.keys() | sb.keys() if sa.get(k, "<missing>") != sb.get(k, "<missing>"))
    numbers = sum(isinstance(v, int | float) and not isinstance(v, bool) for v in a.values())
    lines = [
        "# Micro pipeline before and after: identical summary and stage keys",
        "",
        f"Machine: {machine_line()} (shared with other jobs; no timing is compared)",
        "",
        f"Command: `python benchmarks/pipeline_identity.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
        "",
        f"- before: `{args.before}` ({before['stages']} stages); after: this tree at `{head}` "
        f"({after['stages']} stages)",
        f"- `summary.json` leaves compared (timings left out): {len(a)} before, {len(b)} after, of which "
        f"{numbers} numbers; **{len(differ)} differ or are missing after**; {len(added)} leaves are new after "
        f"(listed below)",
        f"- this tree over the before run folder: {again['stages']} stages, {len(again['ran'])} ran "
        f"({', '.join(again['ran']) or 'none'}): **every stage key is unchanged**"
        if not again["ran"]
        else f"- this tree over the before run folder reran {len(again['ran'])} stages: {', '.join(again['ran'])}",
        f"- scaling report (`indus scaling report OUT {' '.join(SCALING_ARGS)}`), `report.json` leaves: "
        f"{len(sa)} before, {len(sb)} after; **{len(scaling_differ)} differ**",
        *(
            [
                f"- `--pin-after` settings ({', '.join(args.pin_after)}) enter the keys of the stages they set: "
                "those stages rerun over the before folder by construction"
            ]
            if args.pin_after
            else []
        ),
        "",
    ]
    if differ:
        lines += ["| leaf | before | after |", "|---|---|---|"]
        lines += [f"| `{k}` | {a.get(k, '<missing>')} | {b.get(k, '<missing>')} |" for k in differ[:50]]
        lines.append("")
    if added:
        lines += [
            "New leaves (fields the after code adds; no before value to compare):",
            "",
            ", ".join(f"`{k}`" for k in added),
            "",
        ]
    if scaling_differ:
        lines += ["| scaling leaf | before | after |", "|---|---|---|"]
        lines += [f"| `{k}` | {sa.get(k, '<missing>')} | {sb.get(k, '<missing>')} |" for k in scaling_differ[:50]]
        lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    if differ or again["ran"] or scaling_differ:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
