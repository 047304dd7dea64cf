"""Is a multi-task encoder a good starting point for a task it never saw? (README, "New tasks").

1. Trains hf_mtl's default multi-task model on the dev suite WITHOUT the held-out task (recipes/dev_suite_local.yaml
   minus `--held-out`, default sst2), seed `--encoder-seed`, and keeps it (`<output-dir>/encoder`).
2. Adapts the raw all-MiniLM-L6-v2 and that encoder to the held-out task with `hf_mtl.few_shot_evaluate`, the same
   examples, head initialisation and procedure for both, per seed:
   - few-shot: 16 and 64 examples, 10 SGD steps (the `hf-mtl few-shot` defaults);
   - full fine-tuning: 1,600 training rows (balanced), 200 AdamW steps of 16 rows, lr 5e-5 (head 5e-4).
3. Writes `few_shot/` and `full/` (few_shot.{md,json,png}) and `new_task.md` with both tables.

    HF_MTL_DATA=/path/to/data python benchmarks/new_task_transfer.py --seeds 1,2,3 --output-dir results/new_task_sst2

A finished step is not redone (the encoder folder, each table's JSON), so an interrupted run continues.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "dev_suite_local.yaml"))
    parser.add_argument("--held-out", default="sst2", help="The task left out of multi-task training and adapted to.")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--encoder-seed", type=int, default=1)
    parser.add_argument("--full-rows", type=int, default=1600)
    parser.add_argument("--full-steps", type=int, default=200)
    parser.add_argument("--max-eval-samples", type=int, default=500)
    parser.add_argument("-o", "--override", action="append", default=[], help="Recipe overrides for the encoder.")
    parser.add_argument("--output-dir", default="results/new_task_sst2")
    args = parser.parse_args(argv)
    if not os.environ.get("HF_MTL_DATA"):
        parser.error("set HF_MTL_DATA to the folder with sst2/, conll2003/, atis/, stsb/ (JSON lines)")

    from hf_mtl import FewShotConfig, few_shot_evaluate
    from hf_mtl.recipes import load_recipe
    from hf_mtl.recipes.data import load_recipe_data
    from hf_mtl.recipes.run import minilm_path, train_recipe

    out = Path(args.output_dir)
    seeds = [int(s) for s in args.seeds.split(",")]
    recipe = load_recipe(args.recipe, args.override)
    if args.held_out not in recipe.task_names:
        parser.error(f"--held-out {args.held_out!r} is not a task of {args.recipe} ({', '.join(recipe.task_names)})")
    others = [name for name in recipe.task_names if name != args.held_out]
    encoder = out / "encoder"
    if not (encoder / "config.json").is_file():
        print(f"[1/3] multi-task encoder on {', '.join(others)} (seed {args.encoder_seed}) -> {encoder}", flush=True)
        train_recipe(recipe.subset(others), changes={"seed": args.encoder_seed, "output_dir": str(encoder),
                                                     "save_strategy": "no", "push_to_hub": False})
    else:
        print(f"[1/3] multi-task encoder: reused ({encoder})", flush=True)

    held_out = load_recipe_data(recipe.subset([args.held_out]))[args.held_out]
    spec = held_out.spec
    train, evaluation = held_out.splits["train"], held_out.splits["validation"]
    models = {"raw all-MiniLM-L6-v2": minilm_path(), f"multi-task ({', '.join(others)})": str(encoder)}
    settings = {
        "few_shot": FewShotConfig(shots=[16, 64], seeds=seeds, max_eval_samples=args.max_eval_samples,
                                  max_seq_length=64),
        "full": FewShotConfig(shots=[args.full_rows], seeds=seeds, steps=args.full_steps, optimizer="adamw", lr=5e-5,
                              head_lr=5e-4, batch_size=16, max_eval_samples=args.max_eval_samples, max_seq_length=64),
    }
    tables = {}
    for step, (name, config) in enumerate(settings.items(), start=2):
        folder = out / name
        if (folder / "few_shot.json").is_file():
            print(f"[{step}/3] {name}: reused ({folder})", flush=True)
        else:
            print(f"[{step}/3] {name}: {len(models)} models x {len(config.shots)} sizes x {len(seeds)} seeds", flush=True)
            result = few_shot_evaluate(models, spec, train, evaluation, config=config)
            result.save(str(folder))
        tables[name] = (folder / "few_shot.md").read_text(encoding="utf-8")
    summary = ["# New task: the multi-task encoder vs the raw backbone", "",
               f"Held-out task `{args.held_out}`; the encoder was trained on {', '.join(others)} with the recipe's "
               f"settings (`{Path(args.recipe).name}`, seed {args.encoder_seed}); seeds {seeds}.", ""]
    for name, text in tables.items():
        summary += [f"## {name.replace('_', '-')}", "", text.strip(), ""]
    (out / "new_task.md").write_text("\n".join(summary), encoding="utf-8")
    print(json.dumps({name: json.loads((out / name / "few_shot.json").read_text())["summary"] for name in settings},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
