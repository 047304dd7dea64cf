"""`hf-mtl train RECIPE [--override key=value ...]`: train the model a recipe describes (see `recipes/README.md`)."""

from __future__ import annotations

import argparse


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="A recipe YAML file, or the name of a shipped recipe (demo, glue, ner_intent, ...).")
    parser.add_argument(
        "--override", "-o", action="append", default=[], metavar="KEY=VALUE",
        help="Change one recipe value, with a dotted key: training.learning_rate=1e-4, tasks.sst2.metric=f1, "
        "model.backbone=bert-base-uncased. Values are read as YAML (numbers, true/false, null, [a, b]). Repeatable.",
    )
    parser.add_argument("--output-dir", help="Shortcut for --override training.output_dir=DIR.")


def recipe_overrides(args: argparse.Namespace) -> list[str]:
    return list(args.override) + ([f"training.output_dir={args.output_dir}"] if args.output_dir else [])


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="Train a multi-task model from a recipe.",
        description="Train a multi-task model from a recipe: data loading, training, per-task evaluation, and the model, "
        "tokenizer, model card, metrics.json and training_curves.png in the output directory. Works under "
        "`accelerate launch` / `torchrun` too (through recipes/train.py).",
    )
    add_recipe_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ...recipes import load_recipe
    from ...recipes.run import run_training_entry

    recipe = load_recipe(args.recipe, recipe_overrides(args))
    return run_training_entry(recipe)
