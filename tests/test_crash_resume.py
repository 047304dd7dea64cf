"""Crash and resume for real: a training process is killed with SIGKILL (after a checkpoint, or in the middle of
writing one), a fresh process resumes with `resume_from_checkpoint=True`, and the result must equal an
uninterrupted run with the same seed: every weight, the weighting strategy's state, the per-task metrics and the
per-step logs (task losses, task weights, the adversarial coefficient), exactly (CPU, one thread per process).

Each process is `python -m tests.reliability_worker` (see there); the multi-process non-finite check runs it under
torchrun with 2 processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers.trainer_utils import get_last_checkpoint

from hf_mtl.errors import CheckpointError
from hf_mtl.training.checkpointing import COMPLETE_MARKER, checkpoint_problems, verify_checkpoint


ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"),
        OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
    )
    return env


def _start(tmp_path: Path, name: str, **config) -> subprocess.Popen:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    log = open(tmp_path / f"{name}.log", "w")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability_worker", str(path)], cwd=ROOT, env=_env(tmp_path), stdout=log, stderr=log
    )


def _finish(process: subprocess.Popen, tmp_path: Path, name: str, timeout: float = 240) -> None:
    code = process.wait(timeout=timeout)
    assert code == 0, (tmp_path / f"{name}.log").read_text()[-4000:]


def _kill_when(process: subprocess.Popen, sentinel: Path, tmp_path: Path, name: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not sentinel.exists():
        assert process.poll() is None, (tmp_path / f"{name}.log").read_text()[-4000:]
        assert time.monotonic() < deadline, "the worker never reached the point where it is killed"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def _assert_same_run(expected_dir: Path, resumed_dir: Path) -> None:
    for name in ("final.safetensors", "final_state.safetensors"):
        expected, resumed = load_file(str(expected_dir / name)), load_file(str(resumed_dir / name))
        assert expected.keys() == resumed.keys()
        for key, value in expected.items():
            assert value.equal(resumed[key]), f"{name}: {key} differs after the resume"
    expected = json.loads((expected_dir / "result.json").read_text())
    resumed = json.loads((resumed_dir / "result.json").read_text())
    assert resumed["metrics"] == expected["metrics"]  # every eval_<task>_<metric>, exactly
    by_step = {entry["step"]: entry for entry in expected["logs"]}
    after_resume = [entry for entry in resumed["logs"] if entry["step"] > int(resumed["resumed_from"].rsplit("-", 1)[1])]
    assert after_resume and all(entry == by_step[entry["step"]] for entry in after_resume)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_after_a_checkpoint_then_resume_equals_an_uninterrupted_run(tmp_path):
    """FAMO (stateful weighting) on mixed batches, gradient accumulation 2, the adversarial discriminator on a
    Ganin schedule, dropout on: killed during step 5, after checkpoint-3; resumed from checkpoint-3."""
    common = dict(weighting="famo", batching="mixed", accumulation=2, batch_size=3, max_steps=8, save_steps=3)
    full = _start(tmp_path, "full", mode="run", output_dir=str(tmp_path / "full"), **common)
    crashed_dir = tmp_path / "crashed"
    sentinel = tmp_path / "hung"
    crash = _start(tmp_path, "crash", mode="hang_after", hang_step=4, sentinel=str(sentinel), output_dir=str(crashed_dir), **common)
    _kill_when(crash, sentinel, tmp_path, "crash")
    assert checkpoint_problems(crashed_dir / "checkpoint-3") == [] and not (crashed_dir / "checkpoint-6").exists()
    assert not (crashed_dir / "result.json").exists()

    resume = _start(tmp_path, "resume", mode="resume", output_dir=str(crashed_dir), **common)
    _finish(resume, tmp_path, "resume")
    _finish(full, tmp_path, "full")
    assert json.loads((crashed_dir / "result.json").read_text())["resumed_from"] == str(crashed_dir / "checkpoint-3")
    _assert_same_run(tmp_path / "full", crashed_dir)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_while_writing_a_checkpoint_never_resumes_from_it(tmp_path):
    """Uncertainty weighting (learnable weights beside the model), one task per step, the adversarial
    discriminator: killed while checkpoint-6 is half written. Plain Trainer would pick checkpoint-6;
    `resume_from_checkpoint=True` picks checkpoint-3, and the result equals an uninterrupted run."""
    common = dict(weighting="uncertainty", batching="per_task", batch_size=6, max_steps=8, save_steps=3)
    full = _start(tmp_path, "full", mode="run", output_dir=str(tmp_path / "full"), **common)
    crashed_dir = tmp_path / "crashed"
    sentinel = tmp_path / "stalled"
    crash = _start(tmp_path, "crash", mode="stall_save", stall_step=6, sentinel=str(sentinel), output_dir=str(crashed_dir), **common)
    _kill_when(crash, sentinel, tmp_path, "crash")

    partial = crashed_dir / "checkpoint-6"
    assert (partial / "model.safetensors").is_file() and (partial / "optimizer.pt").is_file()
    assert not (partial / COMPLETE_MARKER).exists() and not (partial / "trainer_state.json").exists()
    assert get_last_checkpoint(str(crashed_dir)) == str(partial)  # what Trainer's own lookup would resume from
    with pytest.raises(CheckpointError, match=r"checkpoint-6': it has no hf_mtl_checkpoint_complete\.json"):
        verify_checkpoint(partial)

    resume = _start(tmp_path, "resume", mode="resume", output_dir=str(crashed_dir), **common)
    _finish(resume, tmp_path, "resume")
    _finish(full, tmp_path, "full")
    assert json.loads((crashed_dir / "result.json").read_text())["resumed_from"] == str(crashed_dir / "checkpoint-3")
    assert "Skipping incomplete checkpoint" in (tmp_path / "resume.log").read_text()
    assert checkpoint_problems(partial) == []  # the resumed run wrote checkpoint-6 again, completely
    _assert_same_run(tmp_path / "full", crashed_dir)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_nan_on_one_process_skips_or_stops_every_process(tmp_path):
    """torchrun, 2 processes, mixed batches: a NaN task loss on process 1 only, at step 1. With `skip`, both
    processes drop that step and stay identical; with `error`, both stop at step 1 (none is left waiting)."""
    config = tmp_path / "ddp.json"
    config.write_text(json.dumps({"mode": "ddp_nonfinite", "output_dir": str(tmp_path)}))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "tests.reliability_worker", str(config)]
    done = subprocess.run(command, cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for report in reports:
        assert report["skip"]["world_size"] == 2 and report["error"]["world_size"] == 2
        assert report["skip"]["skipped_steps"] == 1 and report["skip"]["changed"] and report["skip"]["finite"]
        assert report["error"]["step"] == 1 and report["error"]["finite"]
    assert reports[0]["skip"]["param_sums"] == reports[1]["skip"]["param_sums"]
    assert reports[0]["error"]["param_sums"] == reports[1]["error"]["param_sums"]
    poisoned = reports[1]["error"]["poisoned"]["poisoned"]
    assert reports[1]["error"]["error"].startswith(f"Non-finite loss for task(s) ['{poisoned}'] at step 1")
    assert reports[0]["error"]["error"].startswith("Non-finite loss on another process at step 1")
