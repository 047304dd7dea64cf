"""`python -m benchmarks [--quick] [--only ...]`: run the measurements, write `latest.json` + `latest.md`.

One module per measurement (`training_overhead`, `weighting_cost`, `inference`, `memory`, `data_pipeline`,
`scaling`, `padding`), each returning its rows of the results table (`targets`) and its raw numbers (`details`). A measurement
that fails is recorded in the results (and the exit status is 1); the others still run.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from .options import MEASUREMENTS, build_parser, settings_from_args  # noqa: E402


# Causes found by profiling, shown under the table when the target they explain is missed (see README.md).
EXPLANATIONS: dict[str, str] = {}


def _modules():
    from . import data_pipeline, inference, memory, padding, scaling, training_overhead, weighting_cost

    return {"training": training_overhead, "weighting": weighting_cost, "inference": inference, "memory": memory,
            "data": data_pipeline, "scaling": scaling, "padding": padding}


def run(settings, workdir: Path) -> dict:
    from .arms import BenchContext
    from .common import device_and_dtype, environment, load_average, log, quiet, resolve_backbone

    quiet()
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    settings.device, settings.bf16 = device_and_dtype()
    start = time.time()
    backbone = resolve_backbone(settings.model, workdir)
    results = {"schema_version": 1, "environment": environment(settings), "settings": settings.to_dict(),
               "targets": [], "measurements": {}, "errors": {}, "notes": []}
    log(f"backbone {backbone} on {settings.device}; preparing {settings.num_tasks} tasks")
    context = BenchContext.create(settings, backbone, workdir)
    modules = _modules()
    for name in [m for m in MEASUREMENTS if m in settings.only]:
        log(f"--- {name}")
        try:
            output = modules[name].run(context)
        except Exception as error:  # one broken measurement must not lose the others' numbers
            traceback.print_exc()
            results["errors"][name] = f"{type(error).__name__}: {error}"
            continue
        results["targets"].extend(output["targets"])
        results["measurements"][name] = output["details"]
        results["notes"].extend(output.get("notes", []))
    results["environment"]["load_average_end"] = load_average()
    results["duration_seconds"] = round(time.time() - start, 1)
    results["notes"] = notes(results) + results["notes"]
    return results


def notes(results: dict) -> list[str]:
    from .common import meets

    env = results["environment"]
    found = []
    loads = [load[0] for load in (env.get("load_average_start"), env.get("load_average_end")) if load]
    if loads and max(loads) > (env.get("cpu_count") or 1):
        found.append(
            f"The machine was busy (1-min load average up to {max(loads)} on {env['cpu_count']} cores): absolute times "
            "are slower than on a quiet machine and each ratio's per-repeat range is wide; the ratios are medians of "
            "interleaved pairs, which a shared load affects on both sides."
        )
    if results["settings"]["model"] == "tiny":
        found.append("Backbone `tiny` (a random 2-layer BERT): a smoke run of the harness; the numbers mean nothing.")
    for row in results["targets"]:
        if row["status"] != "MISSED":
            continue
        label = f"Target {row['id']} ({row['name']}, {row['value']})"
        if row["id"] in EXPLANATIONS:
            found.append(f"{label}: {EXPLANATIONS[row['id']]}")
        spread = row.get("spread") or [None, None]
        if meets(row, spread[0]) or meets(row, spread[1]):
            found.append(f"{label}: the per-repeat ratios ({spread[0]} to {spread[1]}) fall on both sides of the goal, "
                         "so this run cannot decide it; re-run with more repeats (--repeats) on a quieter machine.")
        if meets(row, row.get("cpu_value")):
            found.append(f"{label}: on CPU time the ratio is {row['cpu_value']}, within the goal: the extra wall time is "
                         "time spent waiting for a core, not work done by hf_mtl.")
    return found


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_from_args(args)
    except ValueError as error:  # bad settings: one line, before any model is loaded
        print(f"python -m benchmarks: error: {error}", file=sys.stderr)
        return 2


def run_from_args(args) -> int:
    """Run with parsed options (`hf-mtl bench` calls this with its own parser's result)."""
    settings = settings_from_args(args)
    if args.update_readme and not Path(args.update_readme).is_file():
        raise ValueError(f"--update-readme {args.update_readme!r}: file not found.")
    from .report import table, update_readme, write

    with tempfile.TemporaryDirectory(prefix="hf_mtl_bench_") as workdir:
        results = run(settings, Path(workdir))
    json_path, md_path = write(results, settings.output_dir)
    if args.update_readme:
        update_readme(args.update_readme, results)
    print(table(results))
    print(f"\nWrote {json_path} and {md_path}" + (f"; updated {args.update_readme}" if args.update_readme else ""))
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
