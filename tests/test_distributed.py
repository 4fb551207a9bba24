"""Two processes on one batch (accelerate launch and torchrun, gloo on the CPU): disjoint shares, complete union."""

import collections
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from ivmixed.batch import INDEX_FILE, plan_jobs
from ivmixed.prompts import items_from_prompts

PROMPTS = ["a bright blob moving right", "a dark blob moving left", "a bright blob moving up", "a dark blob moving down"]
SMALL_ARGS = ["--steps", "4", "--frames", "4", "--height", "8", "--width", "8"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher(kind):
    bindir = os.path.dirname(sys.executable)
    if kind == "accelerate":
        # on a machine without CUDA, --multi_gpu is what starts N processes (through torchrun, gloo backend);
        # --cpu alone starts one unless an MPI hostfile is given
        exe = shutil.which("accelerate", path=bindir) or shutil.which("accelerate")
        return [exe, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no", "--main_process_port", str(free_port()), "-m", "ivmixed"]
    exe = shutil.which("torchrun", path=bindir) or shutil.which("torchrun")
    return [exe, "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "ivmixed"]


@pytest.mark.parametrize("kind", ["accelerate", "torchrun"])
def test_two_processes_take_disjoint_shares_whose_union_is_the_plan(kind, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"{PROMPTS[i % 4]}\n" for i in range(10)))
    out = tmp_path / "out"
    cmd = [*launcher(kind), "batch", str(prompts), "--programs", "origin,IV-IV", "--seeds", "2",
           "--out", str(out), "--format", "npy", "--quiet", *SMALL_ARGS]
    assert None not in cmd, f"{kind} is not on PATH (accelerate is a dependency of ivmixed; torchrun comes with torch)"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = sorted(line for line in done.stderr.splitlines() if line.startswith("process "))
    assert [s.split(":")[0] for s in summaries] == ["process 0 of 2", "process 1 of 2"]
    assert all("20 generated" in s and "of 20 videos (plan: 40)" in s for s in summaries)

    jobs = plan_jobs(items_from_prompts(prompts.read_text().splitlines()), ["origin", "IV-IV"], seeds=2)
    records = [json.loads(line) for line in (out / INDEX_FILE).read_text().splitlines()]
    counts = collections.Counter(r["key"] for r in records)
    assert set(counts) == {j.key for j in jobs} and max(counts.values()) == 1  # complete union, nothing twice
    group = {j.key: j.group for j in jobs}
    assert all(r["rank"] == group[r["key"]] % 2 for r in records)  # each process did exactly its own share
    for job in jobs:
        assert (out / job.folder / f"{job.name}.npy").is_file() and (out / job.folder / f"{job.name}.npy.json").is_file()
    assert not (out / ".partial").exists()
