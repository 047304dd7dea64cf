"""`hf-mtl affinity RUN`: show the inter-task affinity a training run measured and the task groups it suggests.

RUN is a training output directory (or its `task_affinity.json`) from a run with `task_affinity_steps > 0`. The
command prints the matrix, the suggested groups (optionally for a given number of groups) and a `model:` snippet
for hierarchical sharing, and (re)draws the heat-map.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from ...evaluation.affinity import AFFINITY_PNG, load_affinity, partition_score, plot_affinity, suggest_groups


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "affinity",
        help="Inter-task affinity (TAG) of a run and the task groups it suggests.",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", help="Training output directory, or the task_affinity.json it holds.")
    parser.add_argument("--num-groups", type=int, default=None, help="Suggest exactly this many groups (default: best).")
    parser.add_argument(
        "--num-shared-layers", type=int, default=None, help="Put this N in the printed hierarchical-sharing snippet."
    )
    parser.add_argument("--plot", default=None, help=f"Where to write the heat-map (default: {AFFINITY_PNG} beside the JSON).")
    parser.add_argument("--json", action="store_true", help="Print the result as JSON instead of a table.")
    parser.set_defaults(func=run)


def run(args) -> int:
    data = load_affinity(args.run)
    tasks = list(data["tasks"])
    matrix = np.asarray(data["affinity"], dtype=float)
    if matrix.shape != (len(tasks), len(tasks)):
        raise ValueError(f"{args.run!r}: affinity matrix of shape {matrix.shape} for {len(tasks)} tasks.")
    groups = suggest_groups(matrix, args.num_groups, tasks)
    score = partition_score(matrix, [[tasks.index(t) for t in group] for group in groups])
    directory = args.run if os.path.isdir(args.run) else os.path.dirname(os.path.abspath(args.run))
    plot_path = plot_affinity(matrix, tasks, args.plot or os.path.join(directory, AFFINITY_PNG), data.get("num_measurements"))
    if args.json:
        print(json.dumps({"tasks": tasks, "affinity": matrix.tolist(), "groups": groups, "score": score, "plot": plot_path}, indent=2))
        return 0
    width = max(len(t) for t in tasks) + 2
    print("Inter-task affinity z[i -> j] (row i: lookahead step on task i; column j: change of task j's loss),")
    print(f"mean of {data.get('num_measurements', '?')} measurement(s); > 0 helps, < 0 hurts.\n")
    print(" " * width + "".join(f"{t[:10]:>11}" for t in tasks))
    for task, row in zip(tasks, matrix):  # %g: affinities scale with the lookahead rate and can be 1e-5 or smaller
        print(f"{task:<{width}}" + "".join(f"{value:>11.3g}" for value in row))
    print(f"\nSuggested groups ({len(groups)}, score {score:.3g}): {groups}")
    print("\nHierarchical sharing with these groups (recipe `model:` section / MultiTaskConfig):")
    n = args.num_shared_layers if args.num_shared_layers is not None else "<N>"
    print(f"  sharing: hierarchical\n  sharing_kwargs:\n    num_shared_layers: {n}\n    groups: {json.dumps(groups)}")
    print(f"\nHeat-map: {plot_path}")
    return 0
