"""`hf-mtl augmentation-report RECIPE [--seeds 1,2,3]`: does `augment:` help, measured rather than assumed.

Each task of the recipe with an `augment:` entry is trained alone without and with its augmentation, under the same
number of updates and seed(s) (see `hf_mtl.recipes.augmentation_report`), and scored on its validation split; writes
augmentation.md, augmentation.json and augmentation_deltas.png.
"""

from __future__ import annotations

import argparse

from .train import add_recipe_arguments, recipe_overrides
from .transfer_report import add_seeds_argument


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "augmentation-report",
        help="Each augmented task trained without and with its augmentation, same budget: table and plot.",
        description=__doc__.split("\n\n", 1)[1],
    )
    add_recipe_arguments(parser)
    add_seeds_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ...recipes import load_recipe
    from ...recipes.augmentation_report import run_augmentation_report

    recipe = load_recipe(args.recipe, recipe_overrides(args))
    seeds = args.seeds or [int(recipe.training.get("seed", 42))]
    report = run_augmentation_report(recipe, seeds, output_dir=args.output_dir)
    for row in report["rows"]:
        spread = f" ± {row['delta_std']:.4f}" if row["delta_std"] is not None else ""
        print(f"  {row['task']:<16} {row['metric']:<9} without {row['plain']:.4f}  with {row['augmented']:.4f}  "
              f"delta {row['delta']:+.4f}{spread}  {row['verdict']}")
    return 0
