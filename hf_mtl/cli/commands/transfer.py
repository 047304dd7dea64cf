"""`hf-mtl transfer MODEL_DIR --new-task NAME --data train.jsonl --freeze top-k:2 --rehearsal 0.2 --old-data sst2=sst2.jsonl`

Adds a task to a trained multi-task checkpoint and fine-tunes it: `--freeze` chooses what trains (head, top-k:N,
adapters, layers:0-3, embeddings, pattern:REGEX, none; repeat to combine), `--rehearsal` keeps a share of the
steps on old tasks. Old tasks given with `--old-eval-data` are evaluated before and after, so the report shows
what the new task cost them. Writes the model, its tokenizer and transfer_report.{md,json} to --output-dir.
"""

from __future__ import annotations

import argparse
import os

from ..task_options import add_task_arguments, build_task_spec, load_data_file, parse_task_file_pairs


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "transfer",
        help="Teach a trained multi-task model a new task (freezing, rehearsal, before/after report).",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL_DIR", help="A trained hf_mtl checkpoint directory.")
    add_task_arguments(parser, flag="--new-task")
    parser.add_argument("--data", required=True, help="Training data of the new task (json/jsonl/csv).")
    parser.add_argument("--eval-data", default=None, help="Evaluation data of the new task.")
    parser.add_argument("--freeze", action="append", default=None, help="Freeze rule; repeat to combine (default none).")
    parser.add_argument("--rehearsal", type=float, default=0.0, help="Share of steps on old tasks, in [0, 1).")
    parser.add_argument("--old-data", action="append", metavar="TASK=FILE", help="Training data of an old task, for rehearsal.")
    parser.add_argument("--old-eval-data", action="append", metavar="TASK=FILE", help="Evaluation data of an old task (before/after).")
    parser.add_argument("--output-dir", required=True, help="Where the new model and the report are written.")
    parser.add_argument("--max-steps", type=int, default=-1, help="Optimizer steps (default: --epochs).")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tokenizer", default=None, help="Tokenizer directory when MODEL_DIR has none.")
    parser.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from ...adaptation import learn_new_task
    from ...modeling_multitask import MultiTaskModel
    from ...training.arguments import MultiTaskTrainingArguments

    if not os.path.isdir(args.model):
        raise FileNotFoundError(f"Model directory {args.model!r} does not exist.")
    if not 0 <= args.rehearsal < 1:
        raise ValueError(f"--rehearsal is a share of the steps in [0, 1), got {args.rehearsal}.")
    old_train = {name: load_data_file(path, f"--old-data {name}") for name, path in parse_task_file_pairs(args.old_data, "--old-data").items()}
    old_eval = {name: load_data_file(path, f"--old-eval-data {name}") for name, path in parse_task_file_pairs(args.old_eval_data, "--old-eval-data").items()}
    train = load_data_file(args.data, "--data")
    evaluation = load_data_file(args.eval_data, "--eval-data") if args.eval_data else None
    spec = build_task_spec(args, train, evaluation)
    model = MultiTaskModel.from_pretrained(args.model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.model)
    except (OSError, ValueError):
        raise FileNotFoundError(f"{args.model!r} has no tokenizer files; pass --tokenizer DIR.") from None
    training_args = MultiTaskTrainingArguments(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        num_train_epochs=args.epochs,
        learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=max(args.batch_size, 32),
        max_seq_length=args.max_seq_length,
        seed=args.seed,
        save_strategy="no",
        report_to="none",
        logging_steps=10,
        disable_tqdm=args.no_progress,
    )
    eval_data = dict(old_eval)
    if evaluation is not None:
        eval_data[spec.name] = evaluation
    result = learn_new_task(
        model,
        spec,
        {spec.name: train, **old_train},
        training_args,
        tokenizer,
        eval_dataset=eval_data or None,
        freeze=args.freeze or "none",
        rehearsal=args.rehearsal,
    )
    print(result.freeze_report.summary())
    result.trainer.save_model(args.output_dir)
    tokenizer.save_pretrained(args.output_dir)
    result.report.save(args.output_dir)
    print(result.report.to_markdown())
    print(f"Wrote the model and transfer_report.md / transfer_report.json to {args.output_dir}.")
    return 0
