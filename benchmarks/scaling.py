"""Target 6 (reported): training samples/s of `MultiTaskTrainer` (K tasks, mixed batches, static weighting) with 1
and 2 processes on the CPU, started by `accelerate launch` (or `torchrun`).

`accelerate launch --cpu --num_processes 2` silently starts ONE process on a machine without GPUs, so two
processes are started with `--multi_gpu --num_processes 2` and the GPUs hidden (gloo on the CPU); the world size
each process reached is checked. The per-process batch stays `batch_size` (weak scaling, the usual data-parallel
measure), and the CPU cores are split between the processes: on a 2-core machine, 1 process x 2 threads against
2 processes x 1 thread (1 process x 1 thread shows what one core does).
"""

from __future__ import annotations

import os

from .common import log, median, target
from .worker import launch


def configurations(quick: bool = False) -> list[tuple[int, int]]:
    """(processes, threads per process): all cores in one process, then in two; the full run adds 1 process on half
    the cores (what one process's share does alone)."""
    cores = os.cpu_count() or 1
    layouts = [(1, cores), (2, max(1, cores // 2))] + ([] if quick else [(1, max(1, cores // 2))])
    return list(dict.fromkeys(layouts))


def run(context) -> dict:
    settings = context.settings
    results = {}
    for repeat in range(settings.scaling_repeats):
        for processes, threads in configurations(quick=settings.preset == "quick"):
            name = f"{processes} process{'es' if processes > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}"
            ranks = launch(context, "mtl_static", settings.scaling_steps,
                           context.workdir / f"scaling-{processes}x{threads}-{repeat}", processes=processes, threads=threads,
                           launcher=settings.launcher, settings_overrides={"device": "cpu", "bf16": False})
            rank0 = ranks[0]
            results.setdefault(name, []).append({
                "samples_per_second": rank0["record"]["samples_per_second"], "world_size": rank0["world_size"],
                "threads": rank0["threads"], "step_time": rank0["record"]["step_time"],
            })
            log(f"scaling, repeat {repeat + 1}/{settings.scaling_repeats}, {name}: "
                f"{rank0['record']['samples_per_second']:.1f} samples/s (world size {rank0['world_size']}, {rank0['threads']} thread(s))")
    summary = {name: {"samples_per_second": median(r["samples_per_second"] for r in runs),
                      "world_size": runs[0]["world_size"], "threads": runs[0]["threads"], "runs": runs}
               for name, runs in results.items()}
    names = list(summary)
    one, two = summary[names[0]]["samples_per_second"], summary[names[1]]["samples_per_second"]
    notes = []
    if len(names) > 2 and one < summary[names[2]]["samples_per_second"]:
        notes.append(
            f"Scaling: {names[0]} ({one:.1f} samples/s) was slower than {names[2]} "
            f"({summary[names[2]]['samples_per_second']:.1f}): when other jobs hold the cores, one process's OpenMP threads "
            "wait for each other at every operator (a thread that lost its core stalls its partner). Two processes of "
            "one thread each do not synchronise per operator, and on a shared machine they also receive two shares of "
            "the CPU, so their gain over one process overstates what a quiet machine shows."
        )
    return {
        "targets": [target(
            "6", f"Scaling ({settings.launcher}, CPU): samples/s, {names[1]} / {names[0]}", two / one if one else None,
            "report", None,
            detail="; ".join(f"{name}: {s['samples_per_second']:.1f} samples/s" for name, s in summary.items())
            + f"; {os.cpu_count()} cores, per-process batch {settings.batch_size}",
        )],
        "notes": notes,
        "details": {"configurations": summary, "launcher": settings.launcher, "cpu_count": os.cpu_count(),
                    "per_process_batch": settings.batch_size},
    }
