"""Two processes (gloo on the CPU) train like one process with the same global batch."""

import json
import os
import shutil
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


@pytest.mark.slow
@pytest.mark.parametrize("weighting,batching,extra", [("static", "per_task", []), ("dwa", "mixed", ["refine"]),
                                                      ("famo", "mixed", []), ("uncertainty", "mixed", []),
                                                      ("famo", "mixed", ["bf16"])])
def test_fsdp_on_cpu_processes_trains_like_ddp(tmp_path, weighting, batching, extra):
    """FSDP2 through Trainer and accelerate's own FSDP path, on two CPU processes: every parameter is sharded, the
    update equals DDP's with the same per-process batches (mixed batches too: a head one process's micro-batch
    does not use still enters the reduce-scatter), and the saved model loads with a plain `from_pretrained`. In bf16
    FSDP computes with bf16 copies of the parameters (its MixedPrecisionPolicy) where DDP autocasts: close, not equal."""
    rel, abs_metric = (1e-3, 0.05) if "bf16" in extra else (1e-7, 1e-4)
    ddp, fsdp = tmp_path / "ddp", tmp_path / "fsdp"
    ddp.mkdir(), fsdp.mkdir()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT)]
    run([*torchrun, str(ddp), "4", weighting, batching, *extra], tmp_path)
    run([*torchrun, str(fsdp), "4", weighting, batching, "fsdp", *extra], tmp_path)
    reference, sharded = load(ddp), load(fsdp)
    assert sharded["world_size"] == 2 and sharded["sharded"] == sharded["parameters"]
    assert sharded["digest"] == pytest.approx(reference["digest"], rel=rel)  # the reloaded FSDP checkpoint
    for key, value in reference["metrics"].items():
        if key.endswith(("_loss", "_average")):
            assert sharded["metrics"][key] == pytest.approx(value, abs=abs_metric), key


@pytest.mark.slow
def test_packed_rows_and_length_buckets_train_like_whole_batches_under_ddp_and_fsdp(tmp_path):
    """The encoder's padding-free calls on two processes. Packed rows (the default): one call per batch under DDP and
    FSDP alike, trained like whole batches. Length buckets: under DDP each process splits its own batches (a
    different number of encoder calls per process is fine: DDP's collectives are per parameter, in backward); under
    FSDP, whose every encoder call gathers the weights collectively, batches stay whole."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT)]
    arms = {"whole": ["whole"], "ddp_buckets": ["buckets"], "fsdp_buckets": ["buckets", "fsdp"], "ddp_packed": [],
            "fsdp_packed": ["fsdp"]}
    results = {}
    for name, extra in arms.items():
        (tmp_path / name).mkdir()
        run([*torchrun, str(tmp_path / name), "4", "static", "mixed", *extra], tmp_path)
        results[name] = [load(tmp_path / name, rank) for rank in (0, 1)]
    forwards = [len(result["tasks"]) for result in results["whole"]]
    calls = {name: [result["training_encoder_calls"] for result in ranks] for name, ranks in results.items()}
    packed = {name: [result["packed_encoder_calls"] for result in ranks] for name, ranks in results.items()}
    unpadded = {name: [result["unpadded_training_calls"] for result in ranks] for name, ranks in results.items()}
    assert calls["whole"] == calls["fsdp_buckets"] == forwards
    assert all(split > whole for split, whole in zip(calls["ddp_buckets"], forwards))
    for name in ("ddp_packed", "fsdp_packed"):  # every batch with padding packed, in one call
        assert calls[name] == forwards
        assert [p + u for p, u in zip(packed[name], unpadded[name])] == forwards and sum(packed[name]) > 0
    assert packed["whole"] == packed["ddp_buckets"] == [0, 0]
    for name in arms:
        assert results[name][0]["digest"] == pytest.approx(results["whole"][0]["digest"], rel=1e-5), name


@pytest.mark.slow
@pytest.mark.parametrize("weighting", ["famo", "uncertainty"])
def test_fsdp_resume_continues_exactly(tmp_path, weighting):
    """A run resumed from an FSDP checkpoint (sharded optimizer state; FAMO's weights, or uncertainty's log-variances
    with their optimizer state beside FSDP's) ends where the uninterrupted run ends."""
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    whole.mkdir(), (resumed / "checkpoints").mkdir(parents=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT)]
    run([*torchrun, str(whole), "4", weighting, "mixed", "fsdp", "save"], tmp_path)
    shutil.copytree(whole / "checkpoints" / "checkpoint-3", resumed / "checkpoints" / "checkpoint-3")
    run([*torchrun, str(resumed), "4", weighting, "mixed", "fsdp", "resume"], tmp_path)
    weights = [[entry["weight_rating"] for entry in load(path)["log"] if "weight_rating" in entry] for path in (whole, resumed)]
    assert weights[1] == weights[0][-len(weights[1]):]
    assert load(resumed)["digest"] == pytest.approx(load(whole)["digest"], rel=1e-9)


@pytest.mark.slow
def test_every_weighting_in_every_precision_on_two_processes(tmp_path):
    """tests/test_precision.py's matrix on two processes (global batch 8 = 2 processes x 4 rows, or x 2 rows x 2
    accumulation steps): every update finite, the encoder moved, fp16's scaler stepped without overflow, both
    processes hold the same weights; and where accumulation is defined to equal a larger batch (one task per step,
    or per-task gradients combined once per step), accumulation 2 makes the same fp32 update as none."""
    from hf_mtl.weighting import WEIGHTINGS

    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(SCRIPT.parent / "precision_matrix.py"), str(tmp_path)], tmp_path)
    ranks = [json.loads((tmp_path / f"precision_rank{rank}.json").read_text()) for rank in (0, 1)]
    assert len(ranks[0]) == len(WEIGHTINGS.choices()) * 3 * 2
    for arm, result in ranks[0].items():
        assert result["world_size"] == 2 and result["steps"] == 3, arm
        assert result["finite"] and result["weights_finite"] and result["encoder_moved"], arm
        if arm.split("/")[1] == "fp16":
            assert result["scale"] >= 2.0**10, arm
        assert ranks[1][arm]["update"] == pytest.approx(result["update"], rel=1e-9), arm
    for weighting in ("static", "uncertainty", "pcgrad", "cagrad", "gradnorm"):
        one, two = ranks[0][f"{weighting}/fp32/1"]["update"], ranks[0][f"{weighting}/fp32/2"]["update"]
        assert two == pytest.approx(one, rel=1e-4), weighting
