"""`hf-mtl few-shot MODEL_DIR [MODEL_DIR ...] --task NEW --data train.jsonl --shots 8,16,32 --seeds 0,1,2`

Adapts every model (hf_mtl checkpoints or plain backbones) to a held-out task from k examples, with the same
examples, head initialisation and procedure for each, and writes few_shot.{md,json,png}.
"""

from __future__ import annotations

import argparse
import os

from ...adaptation.few_shot import FewShotConfig, few_shot_evaluate
from ..task_options import add_task_arguments, build_task_spec, load_data_file, parse_ints


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "few-shot",
        help="Few-shot adaptation of one or more models to a held-out task (mean ± std over seeds, plot).",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("models", nargs="+", metavar="MODEL_DIR", help="hf_mtl checkpoints or backbone directories to compare.")
    parser.add_argument("--names", default=None, help="Comma-separated display names, one per MODEL_DIR (default: directory names).")
    add_task_arguments(parser)
    parser.add_argument("--data", required=True, help="json/jsonl/csv file the k-shot support sets are drawn from.")
    parser.add_argument("--eval-data", default=None, help="json/jsonl/csv evaluation file (default: a fixed --eval-fraction of --data).")
    parser.add_argument("--eval-fraction", type=float, default=0.3, help="Share of --data held out for evaluation when --eval-data is not given.")
    parser.add_argument("--shots", default="8,16,32", help="Comma-separated support-set sizes.")
    parser.add_argument("--seeds", default="0,1,2", help="Comma-separated seeds (one run per seed and shot count).")
    parser.add_argument("--steps", type=int, default=10, help="Adaptation steps.")
    parser.add_argument("--optimizer", default="sgd", help="sgd (the MetaTrainer inner loop) or adamw.")
    parser.add_argument("--lr", type=float, default=1e-3, help="Learning rate of the encoder.")
    parser.add_argument("--head-lr", type=float, default=1e-1, help="Learning rate of the new head.")
    parser.add_argument("--lr-scheduler-type", default="constant", help="constant (the MetaTrainer inner loop) or linear decay.")
    parser.add_argument("--warmup-ratio", type=float, default=0.0, help="Share of the steps over which the learning rates rise from 0.")
    parser.add_argument("--max-grad-norm", type=float, default=None, help="Clip the gradient to this norm (default: no clipping).")
    parser.add_argument("--batch-size", type=int, default=32, help="Support examples per step.")
    parser.add_argument("--adapt", default="all", help="all (encoder + head) or head (frozen encoder).")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--max-eval-samples", type=int, default=None, help="Score at most this many evaluation rows.")
    parser.add_argument("--tokenizer", default=None, help="Tokenizer for model directories that have none.")
    parser.add_argument("--output-dir", default=None, help="Where few_shot.{md,json,png} go (default: few_shot_<task>).")
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for path in args.models:
        if not os.path.isdir(path):
            raise FileNotFoundError(f"Model directory {path!r} does not exist.")
    names = [name.strip() for name in args.names.split(",")] if args.names else [os.path.basename(os.path.normpath(p)) for p in args.models]
    if len(names) != len(args.models):
        raise ValueError(f"--names has {len(names)} name(s) for {len(args.models)} model(s); give one per MODEL_DIR.")
    if len(set(names)) != len(names):
        raise ValueError(f"Model names {names} are not unique; pass --names a,b,c.")
    config = FewShotConfig(
        shots=parse_ints(args.shots, "--shots"),
        seeds=parse_ints(args.seeds, "--seeds"),
        steps=args.steps,
        optimizer=args.optimizer,
        lr=args.lr,
        head_lr=args.head_lr,
        lr_scheduler_type=args.lr_scheduler_type,
        warmup_ratio=args.warmup_ratio,
        max_grad_norm=args.max_grad_norm,
        batch_size=args.batch_size,
        adapt=args.adapt,
        max_seq_length=args.max_seq_length,
        max_eval_samples=args.max_eval_samples,
    )
    train = load_data_file(args.data, "--data")
    if args.eval_data:
        evaluation = load_data_file(args.eval_data, "--eval-data")
    else:
        if not 0 < args.eval_fraction < 1:
            raise ValueError(f"--eval-fraction must be in (0, 1), got {args.eval_fraction}.")
        split = train.train_test_split(test_size=args.eval_fraction, seed=0)
        train, evaluation = split["train"], split["test"]
    spec = build_task_spec(args, train, evaluation)
    tokenizer = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    result = few_shot_evaluate(
        dict(zip(names, args.models)), spec, train, evaluation, tokenizer, config, disable_tqdm=args.no_progress
    )
    paths = result.save(args.output_dir or f"few_shot_{spec.name}")
    print(result.to_markdown())
    print(f"Wrote {paths['md']}, {paths['json']} and {paths['png']}.")
    return 0
