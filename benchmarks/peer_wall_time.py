"""Target 6: wall time of a full dev-suite multi-task run, hf_mtl against tasknet 1.60, at equal epochs.

Both arms train the five dev-suite tasks (2,000 rows each) for 2 epochs at batch 16 (1,250 optimizer steps) on
all-MiniLM-L6-v2, back to back in this one invocation, each in a fresh process with one thread and the same CPU
affinity, so the machine's state is as equal as it gets:

- hf_mtl: `hf-mtl train recipes/dev_suite_local.yaml` with the recipe defaults (mixed batches, `rep_norm`, batches
  grouped by length, refinement), timed by Trainer's `train_runtime`; the refinement stage (`refine_runtime`) is
  reported beside it and added in the total, since tasknet has no such stage.
- tasknet: `benchmarks/peer_tasknet.py` (its own Trainer; `train_seconds` times `trainer.train()`), in the Python of a
  virtualenv with tasknet 1.60 (`--tasknet-python`).

`--variant KEY=VALUE` adds a second hf_mtl arm with that recipe override (e.g. length-grouped batches), timed in the
same invocation.

Goal (issue "Performance"): hf_mtl / tasknet <= 0.8 on training time. One run each: a ratio measured in one run on a
shared machine; the JSON keeps both arms' steps, so a budget mismatch shows.

    HF_MTL_DATA=/path/to/data python -m benchmarks.peer_wall_time --tasknet-python /path/to/tasknet-venv/bin/python \\
        --seed 1 --output results/peer_wall_time/seed1.json [--variant training.train_sampling_strategy=group_by_length]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
GOAL = 0.8


def _environment(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def _timed(command: list[str], env: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as handle:
        result = subprocess.run(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"{command[:3]}... failed (exit {result.returncode}); see {log}")
    return round(time.perf_counter() - started, 1)


def run_hf_mtl(seed: int, work: Path, env: dict[str, str], overrides: list[str] = (), name: str = "hf_mtl") -> dict:
    output = work / name
    command = [sys.executable, "-m", "hf_mtl.cli", "train", "recipes/dev_suite_local.yaml", "-o", f"training.seed={seed}",
               "--output-dir", str(output)]
    for override in overrides:
        command += ["-o", override]
    wall = _timed(command, env, work / f"{name}.log")
    metrics = json.loads((output / "metrics.json").read_text())
    train = metrics["train"]
    return {"train_seconds": round(train["train_runtime"], 1), "refine_seconds": round(train.get("refine_runtime", 0.0), 1),
            "steps": metrics["global_step"], "epochs": train.get("epoch"), "process_seconds": wall,
            "eval_average": metrics.get("eval_average"), "overrides": list(overrides)}


def _ratios(arm: dict, tasknet: dict) -> dict:
    return {"ratio_train": round(arm["train_seconds"] / tasknet["train_seconds"], 3),
            "ratio_train_with_refinement": round((arm["train_seconds"] + arm["refine_seconds"]) / tasknet["train_seconds"], 3)}


def run_tasknet(seed: int, work: Path, env: dict[str, str], python: str) -> dict:
    output = work / "tasknet"
    command = [python, "benchmarks/peer_tasknet.py", "--seeds", str(seed), "--output-dir", str(output), "--force"]
    wall = _timed(command, env, work / "tasknet.log")
    record = json.loads((output / f"seed{seed}.json").read_text())
    return {"train_seconds": record["train_seconds"], "steps": record["steps"], "process_seconds": wall,
            "eval_seconds": record.get("eval_seconds")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasknet-python", required=True, help="python of a virtualenv with tasknet==1.60")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default="results/peer_wall_time/seed1.json")
    parser.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE",
                        help="Also time a second hf_mtl arm with this recipe override (repeatable), e.g. "
                        "training.train_sampling_strategy=group_by_length.")
    args = parser.parse_args(argv)
    if not os.environ.get("HF_MTL_DATA"):
        parser.error("set HF_MTL_DATA to the dev-suite data folder")
    env = _environment(args.threads)
    work = Path(tempfile.mkdtemp(prefix="peer_wall_time_"))
    try:
        hf_mtl = run_hf_mtl(args.seed, work, env)
        print(f"hf_mtl: {hf_mtl}", flush=True)
        variant = run_hf_mtl(args.seed, work, env, args.variant, "hf_mtl_variant") if args.variant else None
        if variant:
            print(f"hf_mtl variant: {variant}", flush=True)
        tasknet = run_tasknet(args.seed, work, env, args.tasknet_python)
        print(f"tasknet: {tasknet}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratios = _ratios(hf_mtl, tasknet)
    ratio, with_refinement = ratios["ratio_train"], ratios["ratio_train_with_refinement"]
    result = {"seed": args.seed, "threads": args.threads, "hf_mtl": hf_mtl, "tasknet": tasknet, **ratios, "goal": GOAL,
              "met": ratio <= GOAL, "same_steps": hf_mtl["steps"] == tasknet["steps"],
              "date": time.strftime("%Y-%m-%d")}
    if variant:
        variant_ratios = _ratios(variant, tasknet)
        result["hf_mtl_variant"] = {**variant, **variant_ratios, "met": variant_ratios["ratio_train"] <= GOAL}
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"hf_mtl / tasknet training time: {ratio} (with refinement {with_refinement}; goal <= {GOAL}) -> {output}")
    if variant:
        print(f"hf_mtl with {' '.join(args.variant)} / tasknet: {result['hf_mtl_variant']['ratio_train']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
