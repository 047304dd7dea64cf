"""`hf-mtl predict MODEL_DIR [--task NAME ...] [TEXT ...]`: text in, labels out (JSON lines); every task by default.

Input, in this order: TEXT arguments; `--input FILE` (JSON lines with a `text` field, and optionally `task`,
`text_pair`, or `context` + `choices`; or plain text, one input per line); else standard input (one per line, JSON
lines accepted too). Plain-text lines of a sentence-pair task hold the two texts separated by a tab. Every input
goes to every `--task` (a JSON row with a `task` field goes to that task only); without `--task`, a plain line goes
to every task of the model that reads it: the single-text tasks, or the sentence-pair tasks if it holds a tab. All
rows, whatever their task, share ONE mixed encoder pass per batch. Output: one JSON line per (input, task): label names and scores; for token
classification, the words with their tags.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="Predict labels for text, for one or several tasks at once.",
                                   description=__doc__.split("\n\n", 1)[1],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="A saved hf_mtl model (directory with config.json, weights and tokenizer).")
    parser.add_argument("texts", nargs="*", help="Input texts (else --input, else standard input).")
    parser.add_argument("--task", "-t", action="append", default=[], help="Task to predict (repeat for several; default: every task of the model that reads plain text).")
    parser.add_argument("--input", "-i", help="A JSON lines or plain text file of inputs.")
    parser.add_argument("--output", help="Write the JSON lines here instead of standard output.")
    parser.add_argument("--batch-size", type=int, default=32, help="Rows per forward pass (default 32).")
    parser.add_argument("--max-length", type=int, default=128, help="Truncate inputs to this many tokens (default 128).")
    parser.set_defaults(func=run, extra_positionals="texts")


def load_model(model_dir: str):
    """The model and tokenizer of a saved hf_mtl directory, with clear errors for anything else."""
    from transformers import AutoModel, AutoTokenizer

    from ...modeling_multitask import MultiTaskModel

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir!r} is not a saved model directory (no config.json). Give the output_dir of "
                                "`hf-mtl train` or a folder written by `save_pretrained`.")
    model = AutoModel.from_pretrained(path)
    if not isinstance(model, MultiTaskModel):
        raise ValueError(f"{model_dir!r} holds a {type(model).__name__}, not an hf_mtl multi-task model.")
    tokenizer_files = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model")
    if not any((path / name).is_file() for name in tokenizer_files):
        raise FileNotFoundError(
            f"{model_dir!r} holds a model but no tokenizer (none of {', '.join(tokenizer_files)}). Save the one it was "
            "trained with next to it: tokenizer.save_pretrained(MODEL_DIR) (`hf-mtl train` and Trainer.save_model with "
            "processing_class do this)."
        )
    return model.eval(), AutoTokenizer.from_pretrained(path)


def read_rows(args: argparse.Namespace, tasks: list[str], pair_tasks: set[str], explicit: bool = True) -> list[dict]:
    if args.texts:
        lines, source = list(args.texts), "the command line"
    elif args.input:
        if not Path(args.input).is_file():
            raise FileNotFoundError(f"--input {args.input!r}: file not found.")
        lines, source = Path(args.input).read_text(encoding="utf-8").splitlines(), args.input
    else:
        if sys.stdin.isatty():
            raise ValueError("no input: give texts as arguments, --input FILE, or pipe lines into standard input.")
        lines, source = sys.stdin.read().splitlines(), "standard input"
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{source}, line {number}: not valid JSON ({error.msg}).") from None
            targets = [row["task"]] if row.get("task") else tasks
            if not targets:
                raise ValueError(f"{source}, line {number}: the row has no \"task\" field and no --task was given.")
            rows.extend({**row, "task": task} for task in targets)
            continue
        if not tasks:
            raise ValueError("name the task(s) to predict with --task NAME (or give JSON rows with a \"task\" field).")
        for task in tasks:
            if not explicit and (task in pair_tasks) != ("\t" in line):
                continue  # every task by default: a line with a tab is a sentence pair, one without is a single text
            text, _, pair = line.partition("\t") if task in pair_tasks else (line, "", "")
            rows.append({"task": task, "text": text, **({"text_pair": pair} if pair else {})})
    if not rows:
        raise ValueError(f"no input rows in {source}.")
    return rows


def run(args: argparse.Namespace) -> int:
    from ...inference import MultiTaskPredictor

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}.")
    model, tokenizer = load_model(args.model_dir)
    for task in args.task:
        model.config.task_index(task)  # unknown task: a clear error listing the model's tasks
    pair_tasks = {spec.name for spec in model.config.task_specs if len(spec.text_columns or []) > 1}
    # No --task: every task the model has whose input is plain text (multiple choice needs its choices in JSON rows).
    tasks = args.task or [spec.name for spec in model.config.task_specs if spec.type != "multiple_choice"]
    rows = read_rows(args, tasks, pair_tasks, explicit=bool(args.task))
    predictor = MultiTaskPredictor(model, tokenizer, batch_size=args.batch_size, max_length=args.max_length)
    results = predictor.predict(rows, progress=len(rows) > args.batch_size)
    output = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for row, result in zip(rows, results):
            shown = {key: row[key] for key in ("text", "text_pair", "context", "id") if key in row}
            output.write(json.dumps({**shown, **result}, ensure_ascii=False) + "\n")
    finally:
        if args.output:
            output.close()
    return 0
