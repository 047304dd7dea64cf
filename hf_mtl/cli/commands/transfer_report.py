"""`hf-mtl transfer-report RECIPE [--seeds 1,2,3]`: measure transfer instead of guessing it.

Trains the recipe's multi-task model and one single-task model per task under the same budget and seed(s) (see
`hf_mtl.evaluation.comparison.BUDGET_DEFINITION`), then writes transfer.md, transfer.json, transfer_deltas.png, the
training curves, and the multi-task model (its card carries the table).
"""

from __future__ import annotations

import argparse

from .train import add_recipe_arguments, recipe_overrides


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes integers separated by commas (e.g. 1,2,3), got {text!r}.") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds needs at least one seed and no repeats, got {text!r}.")
    return seeds


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "transfer-report",
        help="Multi-task vs single-task under the same budget: table, plot, curves.",
        description=__doc__.split("\n\n", 1)[1],
    )
    add_recipe_arguments(parser)
    add_seeds_argument(parser)
    parser.add_argument("--runs-dir", default=None,
                        help="Folder of the runs (default: <output-dir>/runs). Finished runs with the same fingerprint "
                        "are reused: share it between reports (e.g. ablations) to reuse their single-task baselines.")
    parser.add_argument("--jobs", type=int, default=1,
                        help="Runs trained at once, each in its own process with its share of the CPU threads.")
    parser.add_argument("--reuse-any-code", action="store_true",
                        help="Also reuse finished runs made by another version of the hf_mtl code (each run's record "
                        "names its code).")
    parser.add_argument("--retrain", action="append", default=[], choices=("multi_task", "single_task"),
                        help="Train this kind of run again even where a finished one matches (repeatable), e.g. "
                        "--retrain multi_task --reuse-any-code after a fix that changes only the multi-task model. "
                        "The earlier runs are kept beside the new ones.")
    parser.add_argument("--no-model", action="store_true",
                        help="Do not save the first seed's multi-task model (only scores and reports are written).")
    parser.set_defaults(func=run)


def add_seeds_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=parse_seeds, default=None,
                        help="Seeds to repeat the comparison with, e.g. 1,2,3 (default: the recipe's training.seed).")


def run(args: argparse.Namespace) -> int:
    from ...recipes import load_recipe
    from ...recipes.transfer_report import run_transfer_report
    from ...utils.distributed import end_process_group

    recipe = load_recipe(args.recipe, recipe_overrides(args))
    seeds = args.seeds or [int(recipe.training.get("seed", 42))]
    output_dir = None
    if args.output_dir:
        output_dir = args.output_dir
    finished = False
    try:
        report = run_transfer_report(recipe, seeds, output_dir=output_dir, runs_dir=args.runs_dir, jobs=args.jobs,
                                     reuse_any_code=args.reuse_any_code, retrain=args.retrain,
                                     save_model=not args.no_model)
        finished = True
    finally:
        end_process_group(wait_for_others=finished)
    for row in report["rows"]:
        spread = f" ± {row['delta_std']:.4f}" if row["delta_std"] is not None else ""
        print(f"  {row['task']:<16} {row['metric']:<9} single {row['single']:.4f}  multi {row['multi']:.4f}  "
              f"delta {row['delta']:+.4f}{spread}  {row['verdict']}")
    return 0
