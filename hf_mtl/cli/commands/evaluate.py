"""`hf-mtl evaluate MODEL_DIR --data RECIPE | TASK=FILE ...`: per-task metrics of a saved model.

`--data` is a recipe (its tasks' `--split`, default validation, are loaded the way training loaded them) or
`task=file` pairs (json, jsonl, csv, tsv or parquet, with the columns the task was trained on). Labels are checked
against the model's label sets. Prints a table and writes JSON (default: MODEL_DIR/eval_results.json).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="Per-task metrics of a saved model on a recipe's or files' data.",
                                   description=__doc__.split("\n\n", 1)[1])
    parser.add_argument("model_dir", help="A saved hf_mtl model directory.")
    parser.add_argument("--data", nargs="+", required=True, metavar="RECIPE|TASK=FILE",
                        help="A recipe (YAML or shipped name), or task=file pairs.")
    parser.add_argument("--split", default="validation", choices=["train", "validation", "test"],
                        help="With a recipe: which split to evaluate (default validation).")
    parser.add_argument("--override", "-o", action="append", default=[], metavar="KEY=VALUE",
                        help="With a recipe: change one of its values (as in hf-mtl train).")
    parser.add_argument("--output", help="Where to write the JSON results (default MODEL_DIR/eval_results.json).")
    parser.add_argument("--batch-size", type=int, default=64, help="Evaluation batch size (default 64).")
    parser.add_argument("--max-seq-length", type=int, default=128, help="Truncate inputs to this many tokens.")
    parser.set_defaults(func=run)


def load_eval_data(data: list[str], model_config, split: str, overrides: list[str]) -> dict:
    """`{task: Dataset}` from a recipe or task=file pairs, checked against the model's tasks and labels."""
    from ...recipes import load_recipe, load_task_data
    from ...recipes.data import check_columns, check_labels, load_files, normalise

    specs = {spec.name: spec for spec in model_config.task_specs}
    if len(data) == 1 and "=" not in data[0]:
        recipe = load_recipe(data[0], overrides)
        datasets = {}
        for task in recipe.tasks:
            if task.name not in specs:
                raise recipe.error(f"tasks.{task.name}", f"the model has no task {task.name!r}; its tasks: {', '.join(specs)}.")
            loaded = load_task_data(recipe, task, splits=(split,), spec=specs[task.name])
            if split not in loaded.splits:
                raise recipe.error(f"tasks.{task.name}.data.{split}", f"this task has no {split} split to evaluate.")
            datasets[task.name] = loaded.splits[split]
        return datasets
    if overrides:
        raise ValueError("--override applies to a recipe; with task=file pairs, edit the files instead.")
    datasets = {}
    for pair in data:
        task, sep, path = pair.partition("=")
        if not sep or not task or not path:
            raise ValueError(f"--data {pair!r}: give a recipe, or task=file pairs (e.g. sentiment=valid.jsonl).")
        if task not in specs:
            raise ValueError(f"--data {pair!r}: the model has no task {task!r}; its tasks: {', '.join(specs)}.")
        key = f"--data {task}"
        dataset = normalise(load_files(None, key, path), specs[task])
        check_columns(None, key, specs[task], dataset, path)
        check_labels(None, key, specs[task], dataset, path, "eval", given=True)
        datasets[task] = dataset
    return datasets


def run(args: argparse.Namespace) -> int:
    from ...evaluation import main_metric
    from ...training.arguments import MultiTaskTrainingArguments
    from ...training.trainer import MultiTaskTrainer
    from .predict import load_model

    model, tokenizer = load_model(args.model_dir)
    datasets = load_eval_data(args.data, model.config, args.split, args.override)
    with tempfile.TemporaryDirectory(prefix="hf_mtl_eval_") as scratch:
        training_args = MultiTaskTrainingArguments(output_dir=scratch, per_device_eval_batch_size=args.batch_size,
                                                   max_seq_length=args.max_seq_length, report_to="none")
        trainer = MultiTaskTrainer(model=model, args=training_args, eval_dataset=datasets, processing_class=tokenizer)
        metrics = trainer.evaluate()
    results = trainer.last_eval_metrics
    main = {task: main_metric(model.config.task_spec(task)) for task in results}
    for task, values in results.items():
        others = ", ".join(f"{name} {value:.4f}" for name, value in values.items() if name != main[task])
        print(f"  {task:<16} {main[task]} {values[main[task]]:.4f}   ({others})")
    output = Path(args.output) if args.output else Path(args.model_dir) / "eval_results.json"
    report = {"model": str(args.model_dir), "data": args.data, "split": args.split, "tasks": results,
              "main_metrics": main, "average": metrics.get("eval_average"),
              "rows": {task: len(dataset) for task, dataset in datasets.items()}}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"hf-mtl: wrote {output}")
    return 0
