"""Prediction time for every task of each text under the recipes' default (per-task LoRA on the top two blocks),
with the blocks below the adapters run once per text (`hf_mtl.sharing.fan_out`) against one routed row per text and
task (the form before 2026-12-07's fan-out), and hard sharing (one encoding per text) for reference.

`MultiTaskPredictor` (the `multi-task` pipeline's engine) on all-MiniLM-L6-v2 with the dev suite's four single-text
task types (SST-2, NER, intent, slots: 2, 9, 20 and 100 labels), random adapters and heads (timing only); the texts
are real SST-2 sentences (`--data` or `$HF_MTL_DATA`), else generated ones. Arms run interleaved.

    python -m benchmarks.lora_inference [--data DIR] [--texts 64] [--repeats 5] [--threads 1] [--output ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from .common import standalone_setup, write_table


TASKS = [
    {"name": "sst2", "type": "sequence_classification", "labels": ["negative", "positive"]},
    {"name": "ner", "type": "token_classification", "labels": ["O"] + [f"B-T{i}" for i in range(4)] + [f"I-T{i}" for i in range(4)]},
    {"name": "intent", "type": "sequence_classification", "labels": [f"intent{i}" for i in range(20)]},
    {"name": "slots", "type": "token_classification", "labels": ["O"] + [f"B-S{i}" for i in range(50)] + [f"I-S{i}" for i in range(49)]},
]
LORA_TOP2 = {"freeze_backbone": False, "top_layers": 2, "r": 16, "lora_alpha": 32}
ARMS = ("lora_top2_fan_out", "lora_top2_rows", "hard")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--data", default=os.environ.get("HF_MTL_DATA"))
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default="benchmarks/results/lora_inference.md")
    args = parser.parse_args()
    backbone = standalone_setup(args.threads, args.backbone)
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from hf_mtl import MultiTaskConfig, MultiTaskModel
    from hf_mtl.inference import MultiTaskPredictor
    from hf_mtl.sharing.lora import LoraSharing

    tokenizer = AutoTokenizer.from_pretrained(backbone)
    if args.data:
        lines = (Path(args.data) / "sst2" / "validation.jsonl").read_text(encoding="utf-8").splitlines()
        texts = [json.loads(line)["text"] for line in lines[: args.texts]]
    else:
        texts = [f"text number {i} about a film that was " + "quite good " * (i % 7) for i in range(args.texts)]
    rows = [{"task": task["name"], "text": text} for text in texts for task in TASKS]
    predictors = {}
    for arm in ARMS:
        torch.manual_seed(0)
        sharing, options = ("hard", None) if arm == "hard" else ("lora", LORA_TOP2)
        model = MultiTaskModel(MultiTaskConfig(encoder=AutoConfig.from_pretrained(backbone), tasks=TASKS,
                                               sharing=sharing, sharing_kwargs=options))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.02)
        predictors[arm] = MultiTaskPredictor(model, tokenizer, batch_size=args.batch_size)
    fan_out_cost = LoraSharing.fan_out_cost
    times: dict[str, list[float]] = {arm: [] for arm in ARMS}
    answers = {}
    for repeat in range(args.repeats + 1):  # the first round warms up
        for arm in ARMS if repeat % 2 == 0 else reversed(ARMS):
            LoraSharing.fan_out_cost = (lambda self, model, tasks: None) if arm == "lora_top2_rows" else fan_out_cost
            try:
                start = time.perf_counter()
                answers[arm] = predictors[arm].predict(rows)
                elapsed = time.perf_counter() - start
            finally:
                LoraSharing.fan_out_cost = fan_out_cost
            if repeat:
                times[arm].append(elapsed)
    same = all(a.get("label") == b.get("label") and [t["tag"] for t in a.get("tokens", [])] == [t["tag"] for t in b.get("tokens", [])]
               for a, b in zip(answers["lora_top2_fan_out"], answers["lora_top2_rows"]))
    rows_arm = statistics.median(times["lora_top2_rows"])
    notes = [
        f"`MultiTaskPredictor`, all-MiniLM-L6-v2, {len(texts)} {'SST-2 validation sentences' if args.data else 'generated texts'} "
        f"x {len(TASKS)} tasks ({len(rows)} predictions), batches of {args.batch_size} rows, {args.threads} thread(s); "
        f"median of {args.repeats} interleaved repeats after one warm-up. Command: `python -m benchmarks.lora_inference"
        f"{' --data DIR' if args.data else ''} --texts {args.texts} --repeats {args.repeats} --threads {args.threads}`.",
        f"The fan-out and the routed rows give the same labels and tags: {'yes' if same else 'NO'}.",
    ]
    table = []
    for arm in ARMS:
        value = statistics.median(times[arm])
        table.append([f"`{arm}`", f"{value:.2f}", f"{len(rows) / value:.0f}", f"{value / rows_arm:.2f}x"])
    write_table(args.output, "Predicting every task of each text under per-task LoRA on the top two blocks", notes,
                ["arm", "seconds", "predictions/s", "/ routed rows"], table)


if __name__ == "__main__":
    main()
