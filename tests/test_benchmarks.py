"""The benchmark harness (benchmarks/): runs end to end on a tiny model and writes well-formed JSON and Markdown.

Timings are never asserted (the numbers of a tiny model on a shared machine mean nothing); what is checked is the
structure of the results, the counts the harness measures (backward passes per step, world size reached), the
option checks and the README update.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402
from benchmarks.__main__ import main  # noqa: E402
from hf_mtl.cli import main as cli_main  # noqa: E402


STATUSES = {"met", "MISSED", "reported", "not measured"}
TINY = ["--quick", "--model", "tiny", "--threads", "1", "--repeats", "1", "--warmup-steps", "0", "--steps", "1",
        "--weighting-repeats", "1", "--gradient-steps", "1", "--inference-rows", "8", "--inference-iterations", "1",
        "--memory-repeats", "1", "--memory-steps", "1", "--scaling-repeats", "1", "--scaling-steps", "1"]


def run_benchmark(tmp_path, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "benchmarks", *TINY, "--output-dir", str(tmp_path), *extra]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-6000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    markdown = (tmp_path / "latest.md").read_text()
    return results, markdown


def check_structure(results, markdown, measurements):
    assert results["schema_version"] == 1
    assert results["errors"] == {}
    assert set(results["measurements"]) == set(measurements)
    env = results["environment"]
    assert env["device"] in ("cpu", "cuda") and env["precision"] in ("fp32", "bf16 autocast")
    for key in ("torch", "transformers", "hf_mtl", "cpu_count", "load_average_start", "load_average_end", "command"):
        assert key in env
    assert results["settings"]["model"] == "tiny" and results["duration_seconds"] > 0
    assert any("tiny" in note for note in results["notes"])
    for row in results["targets"]:
        assert set(row) == {"id", "name", "value", "unit", "op", "limit", "status", "detail", "spread", "cpu_value"}
        assert row["status"] in STATUSES
        assert row["value"] is None or isinstance(row["value"], (int, float))
        if row["op"] == "report":
            assert row["status"] == "reported"
        else:
            assert row["limit"] is not None and row["status"] in ("met", "MISSED")
        assert f"| {row['id']} | {row['name']} |" in markdown
    assert markdown.startswith("# hf_mtl benchmark results")
    assert "| # | Measurement | Result | Goal | Status | Details |" in markdown


def test_in_process_measurements(tmp_path):
    measurements = ["training", "weighting", "inference", "data", "padding"]
    results, markdown = run_benchmark(tmp_path, "--only", *measurements)
    check_structure(results, markdown, measurements)
    ids = [row["id"] for row in results["targets"]]
    assert ids == ["1", "1b"] + ["2"] * 9 + ["3", "3b", "3c", "5", "5", "7", "7", "7"]
    # Backward passes are counted by a gradient hook, not assumed: one for loss weighting, one per task for gradient
    # weighting (K = 4, and every mixed batch of 16 rows holds all four tasks).
    strategies = results["measurements"]["weighting"]["strategies"]
    assert strategies["static"]["backward_passes"] == 1
    for name in ("uncertainty", "dwa", "famo_next_step", "rep_norm"):
        assert strategies[name]["backward_passes"] == 1 and strategies[name]["limit"] == 1.05
    assert strategies["famo"]["backward_passes"] == 1 and strategies["famo"]["limit"] == 1.5
    assert strategies["gradnorm_rep"]["backward_passes"] == 1 and strategies["gradnorm_rep"]["limit"] == 1.3
    for name in ("gradnorm", "pcgrad", "cagrad"):
        assert strategies[name]["backward_passes"] == 4 and strategies[name]["limit"] == 4.5
    inference = results["measurements"]["inference"]
    assert inference["rows"] == 8 and inference["num_tasks"] == 4
    # Through pipelines: pipeline("multi-task") against one Transformers pipeline per task, at three batch sizes.
    assert set(inference["ratio_pipelines"]) == {"1", "8", "32"} and all(r["ratio"] > 0 for r in inference["ratio_pipelines"].values())
    # One encoder + 4 heads against 4 whole models.
    assert inference["parameters"]["separate"] > 3 * inference["parameters"]["multitask"]
    for arm in ("mtl_trainer", "mtl_static", "hf_trainer"):
        assert 0 <= results["measurements"]["data"][arm]["data_share"] <= 1
    # Rows of their own lengths: the encoder sees fewer positions in length-sorted calls, fewer still packed.
    padding = results["measurements"]["padding"]
    assert padding["max_seq_length"] == 64
    arms = padding["arms"]
    assert arms["packed"]["positions_ratio"] <= arms["buckets"]["positions_ratio"] < 1
    assert arms["grouped"]["positions_ratio"] < 1


@pytest.mark.slow
def test_subprocess_measurements(tmp_path):
    """Peak RSS in fresh processes, disk footprint with peft, and 1 vs 2 processes under torchrun."""
    results, markdown = run_benchmark(tmp_path, "--only", "memory", "scaling", "--launcher", "torchrun")
    check_structure(results, markdown, ["memory", "scaling"])
    memory = results["measurements"]["memory"]
    assert set(memory["peak_rss_mb"]) == {"hf_trainer", "mtl_trainer"}  # quick: the K-task arm is left out
    assert all(len(values) == 1 and values[0] > 0 for values in memory["peak_rss_mb"].values())
    disk = memory["disk_bytes"]
    assert set(disk["adapters"]) == set(disk["full_models"]) and len(disk["adapters"]) == 4
    assert 0 < memory["disk_ratio"] < 1
    configurations = results["measurements"]["scaling"]["configurations"]
    assert {c["world_size"] for c in configurations.values()} == {1, 2}
    assert all(c["samples_per_second"] > 0 for c in configurations.values())


@pytest.mark.parametrize("argv,message", [
    (["--repeats", "0"], "--repeats must be at least 1, got 0"),
    (["--seq-len", "4"], "--seq-len must be at least 8 tokens, got 4"),
    (["--threads", "0"], "--threads must be at least 1, got 0"),
    (["--inference-rows", "2"], "--inference-rows (2) must be >= --num-tasks (4)"),
    (["--update-readme", "no/such/README.md"], "--update-readme 'no/such/README.md': file not found"),
])
def test_bad_options_fail_before_any_work(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert cli_main(["bench", *argv]) == 2  # `hf-mtl bench` shares the options and the checks
    assert message in capsys.readouterr().err


def test_hf_mtl_bench_without_a_checkout_names_the_fix(monkeypatch, capsys):
    from hf_mtl.cli.commands import bench

    monkeypatch.setattr(bench, "find_checkout", lambda: None)
    assert cli_main(["bench"]) == 2
    assert "pip install -e ." in capsys.readouterr().err


def test_update_readme_replaces_only_the_marked_block(tmp_path):
    results = {
        "environment": {"device": "cpu", "precision": "fp32", "cpu_count": 2, "torch_threads": 2, "torch": "2",
                        "transformers": "5", "accelerate": "1", "peft": "0", "hf_mtl": "0.1", "python": "3.11",
                        "date": "today", "command": "python -m benchmarks", "load_average_start": [1, 1, 1]},
        "settings": {"model": "minilm", "batch_size": 16, "seq_len": 32, "num_tasks": 4, "seed": 0, "preset": "full",
                     "repeats": 5, "steps": 8, "warmup_steps": 2, "weighting_repeats": 3, "gradient_steps": 4},
        "duration_seconds": 60,
        "targets": [{"id": "1", "name": "Step", "value": 1.01, "unit": "x", "op": "<=", "limit": 1.05, "status": "met",
                     "detail": "a|b"}],
    }
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.README_START}\nold table\n{report.README_END}\noutro\n")
    report.update_readme(readme, results)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert "| 1 | Step | 1.010x | ≤ 1.05x | met | a/b |" in text
    (tmp_path / "plain.md").write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        report.update_readme(tmp_path / "plain.md", results)


@pytest.mark.slow
def test_task_scaling_script(tmp_path):
    """`benchmarks/task_scaling.py`: every (K, arm) in a fresh worker process; JSON, Markdown table and plot written."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "benchmarks.task_scaling", "--model", "tiny", "--ks", "2,4", "--steps", "1",
               "--warmup", "1", "--output-dir", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-6000:]
    report = json.loads((tmp_path / "task_scaling.json").read_text())
    arms = ["per_task_static", "mixed_static", "mixed_rep_norm", "mixed_pcgrad"]
    assert report["settings"]["ks"] == [2, 4] and report["errors"] == {}
    assert {"torch", "hf_mtl", "cpu_count", "load_average_start", "load_average_end", "command"} <= set(report["environment"])
    assert set(report["results"]) == {"2", "4"}
    pids = set()
    for k in (2, 4):
        assert set(report["results"][str(k)]) == set(arms)
        for arm, run in report["results"][str(k)].items():
            assert run["k"] == k and run["arm"] == arm and run["steps"] == 1
            assert run["step_time"] > 0 and run["peak_rss_mb"] > 0 and run["ru_maxrss_kb"] > 0
            pids.add(run["pid"])
        # One backward pass for the loss-level strategies; one per task present for gradient surgery (a mixed batch of
        # 16 rows holds every one of K <= 16 tasks).
        assert [report["results"][str(k)][arm]["backward_passes"] for arm in arms] == [1, 1, 1, k]
    assert len(pids) == 8  # a fresh process per (K, arm)
    flat = report["flatness"]
    assert set(flat) == set(arms) and flat["mixed_pcgrad"]["status"] == "reported"
    for arm in arms[:3]:
        assert flat[arm]["limit"] == 1.2 and flat[arm]["status"] in ("met", "MISSED")
        assert flat[arm]["from_k"] == 2 and flat[arm]["to_k"] == 4 and flat[arm]["ratio"] > 0
    markdown = (tmp_path / "task_scaling.md").read_text()
    assert "| K | per_task_static | mixed_static | mixed_rep_norm | mixed_pcgrad |" in markdown
    assert markdown.count(" MiB (") == 8 and "Flatness" in markdown
    assert (tmp_path / "task_scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_new_task_few_shot_finetune_table_shares_the_full_tables_fine_tuning():
    """`few_shot_finetune` is `full` on k examples and fewer steps; `full` keeps its config, so its runs are reused."""
    from dataclasses import asdict

    from benchmarks.new_task_transfer import table_configs

    tables = {name: asdict(config) for name, config in table_configs([1, 2], 1600, 200, 500, few_shot_steps=80).items()}
    few, full = tables["few_shot_finetune"], tables["full"]
    assert (few["shots"], few["steps"], full["shots"], full["steps"]) == ([16, 64], 80, [1600], 200)
    assert {k: v for k, v in few.items() if k not in ("shots", "steps")} == {
        k: v for k, v in full.items() if k not in ("shots", "steps")}
    assert full["lr_scheduler_type"] == "linear" and tables["full_constant"]["lr_scheduler_type"] == "constant"
    assert tables["few_shot"]["optimizer"] == "sgd" and tables["few_shot"]["steps"] == 10
