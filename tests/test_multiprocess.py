"""Two processes (gloo on the CPU) train like one process with the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


SCRIPT = Path(__file__).parent / "scripts" / "ddp_train.py"
ROOT = Path(__file__).parent.parent


def run(command, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


def load(path, rank=0):
    return json.loads((path / f"result_rank{rank}.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("weighting,batching", [("static", "per_task"), ("pcgrad", "mixed")])
def test_two_processes_match_one_process(tmp_path, weighting, batching):
    single, double = tmp_path / "single", tmp_path / "double"
    single.mkdir(), double.mkdir()
    run([sys.executable, str(SCRIPT), str(single), "8", weighting, batching], tmp_path)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT),
         str(double), "4", weighting, batching], tmp_path)
    one, ranks = load(single), [load(double, 0), load(double, 1)]
    assert one["world_size"] == 1 and ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    if batching == "per_task":  # every process trains the same task at the same step
        assert ranks[0]["tasks"] == ranks[1]["tasks"] == one["tasks"]
    # Same global batch, same rows: the weights and the metrics agree up to float summation order.
    assert ranks[0]["digest"] == pytest.approx(ranks[1]["digest"], rel=1e-9)
    assert ranks[0]["digest"] == pytest.approx(one["digest"], rel=1e-7)
    for key, value in one["metrics"].items():
        if key.endswith(("_accuracy", "_f1", "_pearson", "_loss", "_average")):
            assert ranks[0]["metrics"][key] == pytest.approx(value, abs=1e-3), key


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_match_one_process(tmp_path):
    """Multi-node DDP: two `torchrun` node launches (one process each, c10d rendezvous on 127.0.0.1) train like one
    process with the same global batch, as two processes of one node do."""
    single, nodes = tmp_path / "single", tmp_path / "nodes"
    single.mkdir(), nodes.mkdir()
    run([sys.executable, str(SCRIPT), str(single), "8", "static", "per_task"], tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
               "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{free_port()}", "--rdzv_id", "hf_mtl_test",
               str(SCRIPT), str(nodes), "4", "static", "per_task"]
    launches = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for _ in range(2)]
    outputs = [launch.communicate(timeout=600)[0] for launch in launches]
    assert all(launch.returncode == 0 for launch in launches), outputs[0][-3000:] + outputs[1][-3000:]
    one, ranks = load(single), [load(nodes, 0), load(nodes, 1)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    assert ranks[0]["digest"] == pytest.approx(ranks[1]["digest"], rel=1e-9)
    assert ranks[0]["digest"] == pytest.approx(one["digest"], rel=1e-7)
