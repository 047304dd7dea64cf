"""One training run in its own process, for the measurements that need a fresh process (peak memory) or several
(scaling). Started by `memory.py` / `scaling.py`, alone or under `accelerate launch` / `torchrun`; writes
`rank<r>.json` into `--out` with the world size really reached, the thread count, peak RSS and the step timings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


TIMEOUT = 1800


def launch(context, arm: str, steps: int, out: Path, processes: int = 1, threads: int | None = None,
           launcher: str | None = None, settings_overrides: dict | None = None) -> list[dict]:
    """Run `arm` for `steps` timed steps in fresh process(es); returns each rank's result.

    One process without a launcher runs plain `python -m benchmarks.worker`. Several processes use `accelerate
    launch --multi_gpu ...` (`--cpu` silently starts ONE process on a machine without GPUs) or `torchrun`; the GPUs
    are hidden so the processes train data-parallel on the CPU (gloo). Raises when a process fails or the world size
    reached differs from `processes`.
    """
    from .common import ROOT

    out.mkdir(parents=True, exist_ok=True)
    settings = {**context.settings.to_dict(), **(settings_overrides or {})}
    settings_file = out / "settings.json"
    settings_file.write_text(json.dumps(settings))
    worker = ["-m", "benchmarks.worker", "--settings", str(settings_file), "--backbone", context.backbone,
              "--arm", arm, "--steps", str(steps), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "TOKENIZERS_PARALLELISM": "false"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    if launcher is None:
        command = [sys.executable, *worker]
    elif launcher == "accelerate":
        env["CUDA_VISIBLE_DEVICES"] = ""
        layout = (["--cpu", "--num_processes", "1"] if processes == 1 else
                  ["--multi_gpu", "--num_processes", str(processes), "--num_machines", "1"])
        command = [sys.executable, "-m", "accelerate.commands.launch", *layout, "--mixed_precision", "no",
                   "--dynamo_backend", "no", "--num_cpu_threads_per_process", str(threads or 1), *worker]
    elif launcher == "torchrun":
        env["CUDA_VISIBLE_DEVICES"] = ""
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), *worker]
    else:
        raise ValueError(f"Unknown launcher {launcher!r}. Choose accelerate or torchrun.")
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:6])} ... failed (rc={result.returncode}):\n{result.stderr[-3000:]}")
    ranks = [json.loads(path.read_text()) for path in sorted(out.glob("rank*.json"))]
    reached = sorted({rank["world_size"] for rank in ranks})
    if len(ranks) != processes or reached != [processes]:
        raise RuntimeError(f"Asked for {processes} process(es), got {len(ranks)} result file(s) with world size(s) {reached}.")
    return ranks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    parser.add_argument("--settings", required=True, help="JSON file with the run's Settings.")
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--arm", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import torch.distributed as dist

    from .arms import BenchContext, run_training
    from .common import current_rss_mb, peak_rss_mb, quiet
    from .options import Settings

    quiet()
    settings = Settings.from_dict(json.loads(Path(args.settings).read_text()))
    if settings.threads and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(settings.threads)
    rank = int(os.environ.get("RANK", "0"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    one_task = args.arm in ("hf_model", "hf_trainer", "mtl_trainer")
    context = BenchContext.create(settings, args.backbone, out / f"work{rank}", one_task=one_task)
    context.model("hf_model" if args.arm == "hf_model" else "mtl_1" if one_task else "mtl_k")
    rss_before = current_rss_mb()
    record = run_training(context, args.arm, args.steps)
    world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    result = {
        "rank": rank,
        "world_size": world_size,
        "threads": torch.get_num_threads(),
        "rss_before_training_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "cuda_peak_allocated_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
        "record": record,
    }
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    from hf_mtl.utils.distributed import end_process_group

    code = main()
    end_process_group()  # with the trainer gone: a group left to interpreter exit can abort a finished rank
    sys.exit(code)
