"""configs/slurm/paper.sbatch assembles one torchrun per node with a c10d rendezvous on the first node."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "configs" / "slurm" / "paper.sbatch"


def test_sbatch_script_launches_the_paper_config_through_srun_and_torchrun(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "srun.txt"
    # stand-ins for the Slurm tools: scontrol expands the node list, srun records what it would run on each node
    (bin_dir / "scontrol").write_text("#!/bin/sh\nprintf 'gpu-node-01\\ngpu-node-02\\n'\n")
    (bin_dir / "srun").write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > {shlex.quote(str(log))}\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_NODELIST": "gpu-node-[01-02]",
        "SLURM_NNODES": "2",
        "SLURM_JOB_ID": "4242",
        "SLURM_GPUS_ON_NODE": "4",
        "RUN_DIR": "/shared/runs/p",
    }
    done = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    args = log.read_text().splitlines()
    assert args[:5] == ["--kill-on-bad-exit=1", "--nodes", "2", "--ntasks-per-node", "1"]
    cmd = args[5:]
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    opts = dict(zip(cmd[3:13:2], cmd[4:14:2]))
    assert opts == {
        "--nnodes": "2",
        "--nproc_per_node": "4",
        "--rdzv_id": "4242",
        "--rdzv_backend": "c10d",
        "--rdzv_endpoint": "gpu-node-01:29500",
    }
    assert cmd[13:] == [
        "-m",
        "indus",
        "--data-root",
        str(ROOT / "data"),
        "run",
        "configs/pipeline/paper.yaml",
        "--out",
        "/shared/runs/p",
    ]
    assert (ROOT / "configs" / "pipeline" / "paper.yaml").is_file()
    assert "#SBATCH --ntasks-per-node=1" in SCRIPT.read_text()
