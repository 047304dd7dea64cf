"""Is a multi-task encoder a good starting point for a task it never saw? (README, "New tasks").

1. Trains hf_mtl's default multi-task model on the dev suite WITHOUT the held-out task (recipes/dev_suite_local.yaml
   minus `--held-out`, default sst2), once per `--encoder-seeds`, and keeps each (`<output-dir>/encoder_seed<N>`).
2. Adapts the raw all-MiniLM-L6-v2 and every encoder to the held-out task with `hf_mtl.few_shot_evaluate`, the same
   examples, head initialisation and procedure for all, per adaptation seed (`--seeds`):
   - `few_shot`: 16 and 64 examples, 10 SGD steps (the `hf-mtl few-shot` defaults: the meta-learning inner loop,
     near chance for every model on SST-2 and below 0.06 F1 on NER);
   - `few_shot_finetune`: the same 16 and 64 examples, fine-tuned like `full` below (AdamW, lr 5e-5, head 5e-4,
     linear decay after 10% warm-up, clipping at 1.0) for `--few-shot-steps` steps (default 100) of 16 rows: the
     usual few-shot fine-tuning protocol, long enough to leave chance;
   - `full`: 1,600 training rows (balanced), 200 AdamW steps of 16 rows, lr 5e-5 (head 5e-4), linear decay after
     10% warm-up, gradients clipped at 1.0: the recipe's own fine-tuning settings (what the transfer report's
     single-task runs use);
   - `full_constant`: the same rows and steps at a constant learning rate, no warm-up, no clipping (the protocol
     of the first measurements, kept for comparison).
3. Writes `<table>/few_shot.{md,json,png}` (all models) and `new_task.md`: each table, then the paired difference
   multi-task minus raw over every (encoder seed, adaptation seed) pair.

    HF_MTL_DATA=/path/to/data python benchmarks/new_task_transfer.py --encoder-seeds 1,2,3 --seeds 1,2,3,4,5,6 \\
        --output-dir results/new_task_sst2_3encoders

Every finished piece is kept and not redone (each encoder, each model's runs per table), so an interrupted run
continues where it stopped; `--tables` runs a subset.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np


ROOT = Path(__file__).resolve().parents[1]
RAW = "raw all-MiniLM-L6-v2"
TABLES = ("few_shot", "few_shot_finetune", "full", "full_constant")


def table_configs(seeds: list[int], full_rows: int, full_steps: int, max_eval_samples: int,
                  few_shot_steps: int = 100) -> dict:
    from hf_mtl import FewShotConfig

    fine_tuning = dict(seeds=seeds, optimizer="adamw", lr=5e-5, head_lr=5e-4, batch_size=16,
                       max_eval_samples=max_eval_samples, max_seq_length=64)
    schedule = dict(lr_scheduler_type="linear", warmup_ratio=0.1, max_grad_norm=1.0)
    return {
        "few_shot": FewShotConfig(shots=[16, 64], seeds=seeds, max_eval_samples=max_eval_samples, max_seq_length=64),
        "few_shot_finetune": FewShotConfig(shots=[16, 64], steps=few_shot_steps, **fine_tuning, **schedule),
        "full": FewShotConfig(shots=[full_rows], steps=full_steps, **fine_tuning, **schedule),
        "full_constant": FewShotConfig(shots=[full_rows], steps=full_steps, **fine_tuning),
    }


def paired_differences(result, encoder_models: list[str]) -> list[str]:
    """Markdown lines: per shots, multi-task minus raw over every (encoder, adaptation seed) pair."""
    lines = ["| shots | raw | multi-task, all encoders | Δ (paired) | pairs ahead / behind |", "|---|---|---|---|---|"]
    score = {(r["model"], r["shots"], r["seed"]): r["metrics"][result.metric] for r in result.runs}
    for k in result.config["shots"]:
        seeds = [s for s in result.config["seeds"] if (RAW, k, s) in score]
        raw = np.array([score[RAW, k, s] for s in seeds])
        pairs = [(score[m, k, s], score[RAW, k, s]) for m in encoder_models for s in seeds if (m, k, s) in score]
        if not pairs or raw.size < 2:
            continue
        multi = np.array([p[0] for p in pairs])
        delta = multi - np.array([p[1] for p in pairs])
        lines.append(
            f"| {k} | {raw.mean():.4f} ± {raw.std(ddof=1):.4f} (n={raw.size}) | {multi.mean():.4f} ± {multi.std(ddof=1):.4f} "
            f"(n={multi.size}) | {delta.mean():+.4f} ± {delta.std(ddof=1):.4f} | {(delta > 0).sum()} / {(delta < 0).sum()} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "dev_suite_local.yaml"))
    parser.add_argument("--held-out", default="sst2", help="The task left out of multi-task training and adapted to.")
    parser.add_argument("--seeds", default="1,2,3", help="Adaptation seeds (examples, head initialisation, order).")
    parser.add_argument("--encoder-seeds", default="1", help="One multi-task encoder is trained per seed.")
    parser.add_argument("--tables", default=",".join(TABLES), help=f"Which adaptations to run, of: {', '.join(TABLES)}.")
    parser.add_argument("--full-rows", type=int, default=1600)
    parser.add_argument("--full-steps", type=int, default=200)
    parser.add_argument("--few-shot-steps", type=int, default=100, help="Steps of the few_shot_finetune table.")
    parser.add_argument("--max-eval-samples", type=int, default=500)
    parser.add_argument("-o", "--override", action="append", default=[], help="Recipe overrides for the encoders.")
    parser.add_argument("--output-dir", default="results/new_task_sst2")
    args = parser.parse_args(argv)
    if not os.environ.get("HF_MTL_DATA"):
        parser.error("set HF_MTL_DATA to the folder with sst2/, conll2003/, atis/, stsb/ (JSON lines)")
    tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        parser.error(f"--tables: unknown {', '.join(unknown)}; choose from {', '.join(TABLES)}")

    from hf_mtl import few_shot_evaluate
    from hf_mtl.adaptation.few_shot import FewShotResult
    from hf_mtl.recipes import load_recipe
    from hf_mtl.recipes.data import load_recipe_data
    from hf_mtl.recipes.run import minilm_path, train_recipe

    out = Path(args.output_dir)
    seeds = [int(s) for s in args.seeds.split(",")]
    encoder_seeds = [int(s) for s in args.encoder_seeds.split(",")]
    recipe = load_recipe(args.recipe, args.override)
    if args.held_out not in recipe.task_names:
        parser.error(f"--held-out {args.held_out!r} is not a task of {args.recipe} ({', '.join(recipe.task_names)})")
    others = [name for name in recipe.task_names if name != args.held_out]
    steps = len(encoder_seeds) + len(tables)
    models = {RAW: minilm_path()}
    for step, seed in enumerate(encoder_seeds, start=1):
        encoder = out / f"encoder_seed{seed}"
        # Weights are not committed (.gitignore): an encoder folder from a clone holds only its config and reports.
        if any((encoder / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
            print(f"[{step}/{steps}] multi-task encoder, seed {seed}: reused ({encoder})", flush=True)
        else:
            print(f"[{step}/{steps}] multi-task encoder on {', '.join(others)}, seed {seed} -> {encoder}", flush=True)
            train_recipe(recipe.subset(others), changes={"seed": seed, "output_dir": str(encoder),
                                                         "save_strategy": "no", "push_to_hub": False})
        models[f"multi-task ({', '.join(others)}), encoder seed {seed}"] = str(encoder)
    encoder_models = [name for name in models if name != RAW]

    held_out = load_recipe_data(recipe.subset([args.held_out]))[args.held_out]
    train, evaluation = held_out.splits["train"], held_out.splits["validation"]
    configs = table_configs(seeds, args.full_rows, args.full_steps, args.max_eval_samples, args.few_shot_steps)
    summary = ["# New task: the multi-task encoder vs the raw backbone", "",
               f"Held-out task `{args.held_out}`; each encoder was trained on {', '.join(others)} with the recipe's "
               f"settings (`{Path(args.recipe).name}`{''.join(f', {o}' for o in args.override)}), encoder seeds "
               f"{encoder_seeds}; adaptation seeds {seeds}.", ""]
    for step, table in enumerate(tables, start=len(encoder_seeds) + 1):
        folder = out / table
        parts = []
        for index, (name, path) in enumerate(models.items()):
            part = folder / f"model{index}"
            saved = FewShotResult.load(str(part)) if (part / "few_shot.json").is_file() else None
            if saved is not None and saved.models == [name] and saved.config == asdict(configs[table]):
                print(f"[{step}/{steps}] {table}, {name}: reused ({part})", flush=True)
            else:
                print(f"[{step}/{steps}] {table}, {name}: {len(configs[table].shots)} size(s) x {len(seeds)} seeds", flush=True)
                few_shot_evaluate({name: path}, held_out.spec, train, evaluation, config=configs[table]).save(str(part))
            parts.append(FewShotResult.load(str(part)))
        combined = parts[0]
        combined.models = [name for part in parts for name in part.models]
        combined.runs = [run for part in parts for run in part.runs]
        combined.save(str(folder))
        summary += [f"## {table.replace('_', '-')}", "", combined.to_markdown().strip(), "",
                    "Multi-task minus raw, paired by adaptation seed, over every encoder:", "",
                    *paired_differences(combined, encoder_models), ""]
    (out / "new_task.md").write_text("\n".join(summary), encoding="utf-8")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
